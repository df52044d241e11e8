//! Continuity-critical medicines (`mappings/medicines/`): the medicines that must not be
//! interrupted at release. They set the earlier escalation lead time of a delivery (issue 12,
//! item 5), and opiate substitution treatment needs the date of its last dose in custody as a
//! safety element (DESIGN §5a). The list is data, reviewed with the hazard log.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::policy::labels::normalise;

/// The extension that carries the date of the last dose given in custody (DESIGN §5a), on
/// `MedicationRequest` and `MedicationStatement`.
pub const LAST_DOSE_EXTENSION: &str =
    "https://throughcare.example.org/fhir/StructureDefinition/last-dose-in-custody";

/// The file name under `mappings/medicines/`.
pub const FILE: &str = "continuity-critical.v1.yaml";

#[derive(Debug, Clone, Deserialize)]
pub struct CodeRef {
    pub system: String,
    pub code: String,
}

/// One group of medicines (opiate substitution, depot antipsychotics, ...).
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    pub id: String,
    pub display: String,
    /// The group needs the date of the last dose given in custody.
    #[serde(default)]
    pub needs_last_dose_date: bool,
    #[serde(default)]
    pub codes: Vec<CodeRef>,
    #[serde(default)]
    pub terms: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct File {
    #[allow(dead_code)]
    title: String,
    lead_time_days: u32,
    groups: Vec<Group>,
}

/// The loaded list.
#[derive(Debug, Clone)]
pub struct ContinuityCritical {
    /// Escalation lead time, in days, for a copy carrying one of these medicines.
    pub lead_time_days: u32,
    pub groups: Vec<Group>,
    /// Each group's terms, normalised (" methadone "), by group index.
    needles: Vec<Vec<String>>,
}

/// A safety element a medicine lacks (DESIGN §5a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MissingSafetyElement {
    /// Neither `dosageInstruction`/`dosage` text nor a structured dose.
    DoseInstruction,
    /// Opiate substitution treatment without the date of its last dose in custody.
    LastDoseDate { group: String },
}

impl MissingSafetyElement {
    pub fn describe(&self) -> String {
        match self {
            MissingSafetyElement::DoseInstruction => {
                "no dose instruction (dosage text or a structured dose)".into()
            }
            MissingSafetyElement::LastDoseDate { group } => format!(
                "no date of the last dose given in custody ({group}; extension {LAST_DOSE_EXTENSION})"
            ),
        }
    }
}

impl ContinuityCritical {
    pub fn from_groups(lead_time_days: u32, groups: Vec<Group>) -> ContinuityCritical {
        let needles = groups
            .iter()
            .map(|g| g.terms.iter().map(|t| normalise(t)).collect())
            .collect();
        ContinuityCritical {
            lead_time_days,
            groups,
            needles,
        }
    }

    /// Reads `dir/continuity-critical.v1.yaml`.
    pub fn load_dir(dir: &Path) -> anyhow::Result<ContinuityCritical> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let file: File = serde_yaml_ng::from_str(&text)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        if file.groups.is_empty() {
            anyhow::bail!("{} lists no medicine groups", path.display());
        }
        Ok(ContinuityCritical::from_groups(
            file.lead_time_days,
            file.groups,
        ))
    }

    /// The groups a medicine resource (`MedicationRequest`, `MedicationStatement`, or a
    /// `Medication`) belongs to. `bundle` resolves a `medicationReference` within the document.
    pub fn groups_of(&self, resource: &Value, bundle: Option<&Value>) -> Vec<&Group> {
        let mut concepts: Vec<&Value> = Vec::new();
        for key in ["medicationCodeableConcept", "code"] {
            if let Some(c) = resource.get(key) {
                concepts.push(c);
            }
        }
        if let (Some(reference), Some(bundle)) = (
            resource
                .pointer("/medicationReference/reference")
                .and_then(Value::as_str),
            bundle,
        ) && let Some(med) = resolve(bundle, reference)
            && let Some(c) = med.get("code")
        {
            concepts.push(c);
        }
        let mut text = String::new();
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for c in &concepts {
            if let Some(t) = c.get("text").and_then(Value::as_str) {
                text.push_str(t);
                text.push(' ');
            }
            for coding in c
                .get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(s), Some(code)) = (
                    coding.get("system").and_then(Value::as_str),
                    coding.get("code").and_then(Value::as_str),
                ) {
                    pairs.push((s, code));
                }
                if let Some(d) = coding.get("display").and_then(Value::as_str) {
                    text.push_str(d);
                    text.push(' ');
                }
            }
        }
        let haystack = normalise(&text);
        self.groups
            .iter()
            .zip(&self.needles)
            .filter(|(g, needles)| {
                g.codes
                    .iter()
                    .any(|c| pairs.contains(&(c.system.as_str(), c.code.as_str())))
                    || needles.iter().any(|n| haystack.contains(n.as_str()))
            })
            .map(|(g, _)| g)
            .collect()
    }

    /// The safety elements (DESIGN §5a) that a medicine resource lacks; empty for anything that
    /// is not a `MedicationRequest` or `MedicationStatement`, and for one that stopped
    /// (`status` completed, stopped, cancelled, entered-in-error, not-taken).
    pub fn missing_safety_elements(
        &self,
        resource: &Value,
        bundle: Option<&Value>,
    ) -> Vec<MissingSafetyElement> {
        let dosage_key = match resource.get("resourceType").and_then(Value::as_str) {
            Some("MedicationRequest") => "dosageInstruction",
            Some("MedicationStatement") => "dosage",
            _ => return Vec::new(),
        };
        let status = resource.get("status").and_then(Value::as_str).unwrap_or("");
        if matches!(
            status,
            "completed" | "stopped" | "cancelled" | "entered-in-error" | "not-taken" | "revoked"
        ) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let has_dose = resource
            .get(dosage_key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|d| {
                d.get("text")
                    .and_then(Value::as_str)
                    .is_some_and(|t| !t.trim().is_empty())
                    || d.get("doseAndRate")
                        .and_then(Value::as_array)
                        .is_some_and(|r| {
                            r.iter().any(|x| {
                                x.get("doseQuantity").is_some() || x.get("doseRange").is_some()
                            })
                        })
                    || d.get("doseQuantity").is_some()
                    || d.get("doseRange").is_some()
            });
        if !has_dose {
            out.push(MissingSafetyElement::DoseInstruction);
        }
        if let Some(group) = self
            .groups_of(resource, bundle)
            .into_iter()
            .find(|g| g.needs_last_dose_date)
            && !has_last_dose_date(resource)
        {
            out.push(MissingSafetyElement::LastDoseDate {
                group: group.display.clone(),
            });
        }
        out
    }

    /// The medicines in a document (or copy) that are continuity-critical: (entry index, group).
    pub fn in_document<'a>(&'a self, bundle: &Value) -> Vec<(usize, &'a Group)> {
        let mut out = Vec::new();
        for (i, entry) in bundle
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(r) = entry.get("resource") else {
                continue;
            };
            if matches!(
                r.get("resourceType").and_then(Value::as_str),
                Some("MedicationRequest" | "MedicationStatement")
            ) {
                for g in self.groups_of(r, Some(bundle)) {
                    out.push((i, g));
                }
            }
        }
        out
    }
}

/// The resource has the last-dose extension with a date.
fn has_last_dose_date(resource: &Value) -> bool {
    resource
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|e| {
            e.get("url").and_then(Value::as_str) == Some(LAST_DOSE_EXTENSION)
                && (e.get("valueDateTime").is_some() || e.get("valueDate").is_some())
        })
}

/// The entry of `bundle` whose fullUrl (or `Type/id`) is `reference`.
fn resolve<'a>(bundle: &'a Value, reference: &str) -> Option<&'a Value> {
    bundle
        .get("entry")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("fullUrl").and_then(Value::as_str) == Some(reference)
                || e.get("resource").is_some_and(|r| {
                    let t = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
                    let id = r.get("id").and_then(Value::as_str).unwrap_or("");
                    format!("{t}/{id}") == reference
                })
        })?
        .get("resource")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list() -> ContinuityCritical {
        ContinuityCritical::load_dir(Path::new("mappings/medicines")).unwrap()
    }

    fn methadone(extra: Value) -> Value {
        let mut r = json!({
            "resourceType": "MedicationRequest", "status": "active",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "322696004", "display": "Methadone 1mg/ml oral solution"}]},
        });
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    #[test]
    fn the_shipped_list_loads_with_a_seven_day_lead_time_and_opiate_substitution_needing_a_last_dose_date()
     {
        let l = list();
        assert_eq!(l.lead_time_days, 7);
        assert!(
            l.groups
                .iter()
                .any(|g| g.id == "opiate-substitution" && g.needs_last_dose_date)
        );
        for id in [
            "depot-antipsychotic",
            "antiretroviral",
            "insulin",
            "anticoagulant",
            "anti-epileptic",
        ] {
            assert!(l.groups.iter().any(|g| g.id == id), "{id}");
        }
    }

    #[test]
    fn medicines_match_by_code_or_by_a_term_on_word_boundaries() {
        let l = list();
        let by_code = json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "322696004"}]}});
        assert_eq!(l.groups_of(&by_code, None)[0].id, "opiate-substitution");
        let by_text = json!({"resourceType": "MedicationStatement", "medicationCodeableConcept": {"text": "Apixaban 5mg tablets"}});
        assert_eq!(l.groups_of(&by_text, None)[0].id, "anticoagulant");
        let insulin = json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "1", "display": "Insulin glargine 100units/ml"}]}});
        assert_eq!(l.groups_of(&insulin, None)[0].id, "insulin");
        let ramipril = json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "39113611000001102", "display": "Ramipril 2.5mg capsules"}]}});
        assert!(l.groups_of(&ramipril, None).is_empty());
        let referenced = json!({"entry": [{"fullUrl": "urn:uuid:m", "resource": {"resourceType": "Medication", "code": {"text": "Levetiracetam 500mg tablets"}}}]});
        let by_reference = json!({"resourceType": "MedicationRequest", "medicationReference": {"reference": "urn:uuid:m"}});
        assert_eq!(
            l.groups_of(&by_reference, Some(&referenced))[0].id,
            "anti-epileptic"
        );
    }

    #[test]
    fn a_medicine_without_a_dose_instruction_or_opiate_substitution_without_its_last_dose_lacks_safety_elements()
     {
        let l = list();
        assert_eq!(
            l.missing_safety_elements(&methadone(json!({})), None),
            vec![
                MissingSafetyElement::DoseInstruction,
                MissingSafetyElement::LastDoseDate {
                    group: "Opiate substitution treatment".into()
                }
            ]
        );
        let dosed = methadone(
            json!({"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 60, "unit": "mg"}}]}]}),
        );
        assert_eq!(l.missing_safety_elements(&dosed, None).len(), 1);
        let complete = methadone(json!({
            "dosageInstruction": [{"text": "60mg once daily"}],
            "extension": [{"url": LAST_DOSE_EXTENSION, "valueDateTime": "2026-11-30T08:15:00Z"}]
        }));
        assert!(l.missing_safety_elements(&complete, None).is_empty());
        let stopped = methadone(json!({"status": "stopped"}));
        assert!(l.missing_safety_elements(&stopped, None).is_empty());
        let empty_text = json!({"resourceType": "MedicationStatement", "status": "active", "medicationCodeableConcept": {"text": "Ramipril"}, "dosage": [{"text": "  "}]});
        assert_eq!(
            l.missing_safety_elements(&empty_text, None),
            vec![MissingSafetyElement::DoseInstruction]
        );
    }
}
