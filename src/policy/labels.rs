//! Labels and data classes: what kind of content a resource is, read from `meta.security` and
//! from its codes (so a sender that forgot a label does not leak it).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ACT_CODE;
use crate::domain::systems;

/// A sensitivity label (v3-ActCode), or the custody-only label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Label {
    /// Substance use.
    #[serde(rename = "ETH")]
    Eth,
    /// Psychiatry / mental health.
    #[serde(rename = "PSY")]
    Psy,
    #[serde(rename = "HIV")]
    Hiv,
    /// Sexuality and reproductive health.
    #[serde(rename = "SEX")]
    Sex,
    /// Sexually transmitted disease.
    #[serde(rename = "STD")]
    Std,
    /// Sexual and domestic violence.
    #[serde(rename = "SDV")]
    Sdv,
    /// Custody information: never leaves for a health recipient that is not a prison.
    #[serde(rename = "custody-only")]
    CustodyOnly,
}

impl Label {
    pub const SENSITIVE: [Label; 6] = [
        Label::Eth,
        Label::Psy,
        Label::Hiv,
        Label::Sex,
        Label::Std,
        Label::Sdv,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Label::Eth => "ETH",
            Label::Psy => "PSY",
            Label::Hiv => "HIV",
            Label::Sex => "SEX",
            Label::Std => "STD",
            Label::Sdv => "SDV",
            Label::CustodyOnly => "custody-only",
        }
    }

    pub fn system(self) -> &'static str {
        match self {
            Label::CustodyOnly => systems::CUSTODY_LABEL,
            _ => ACT_CODE,
        }
    }

    /// Reads a security-label coding. Unknown sensitivity codes in v3-ActCode return `Err` so the
    /// caller can withhold (deny by default); other systems (confidentiality, integrity) are
    /// `Ok(None)`.
    pub fn from_coding(system: Option<&str>, code: Option<&str>) -> Result<Option<Label>, String> {
        match (system, code) {
            (Some(s), Some(c)) if s == ACT_CODE => Label::SENSITIVE
                .into_iter()
                .find(|l| l.code() == c)
                .map(Some)
                .ok_or_else(|| format!("{s}|{c}")),
            (Some(s), Some(c)) if s == systems::CUSTODY_LABEL => {
                if c == "custody-only" {
                    Ok(Some(Label::CustodyOnly))
                } else {
                    Err(format!("{s}|{c}"))
                }
            }
            _ => Ok(None),
        }
    }
}

/// The clinical class a resource belongs to, by type; agreements list the classes they permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataClass {
    /// Patient, Organization, Practitioner, Composition, Encounter: the document's frame.
    Core,
    Medications,
    Problems,
    Allergies,
    CarePlan,
    /// Flags and alerts.
    Alerts,
    Observations,
    Consent,
    /// Anything else: shared only where an agreement names it.
    Other,
}

impl DataClass {
    pub fn of(resource_type: &str) -> DataClass {
        match resource_type {
            "Patient" | "Organization" | "Practitioner" | "PractitionerRole" | "Composition"
            | "Encounter" | "Location" => DataClass::Core,
            "MedicationRequest"
            | "MedicationStatement"
            | "Medication"
            | "MedicationDispense"
            | "MedicationAdministration" => DataClass::Medications,
            "Condition" | "Procedure" => DataClass::Problems,
            "AllergyIntolerance" => DataClass::Allergies,
            "CarePlan" | "Appointment" | "ServiceRequest" | "Goal" => DataClass::CarePlan,
            "Flag" => DataClass::Alerts,
            "Observation" | "DiagnosticReport" | "Immunization" => DataClass::Observations,
            "Consent" => DataClass::Consent,
            _ => DataClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Core => "core",
            DataClass::Medications => "medications",
            DataClass::Problems => "problems",
            DataClass::Allergies => "allergies",
            DataClass::CarePlan => "care-plan",
            DataClass::Alerts => "alerts",
            DataClass::Observations => "observations",
            DataClass::Consent => "consent",
            DataClass::Other => "other",
        }
    }
}

/// One rule of a classification file: codes in `system` that imply `label`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationRule {
    pub system: String,
    pub codes: Vec<String>,
    pub label: Label,
    #[serde(default)]
    pub note: Option<String>,
}

/// A classification file (`mappings/labels/*.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationFile {
    pub title: String,
    pub rules: Vec<ClassificationRule>,
}

/// Labels implied by codes, compiled into one lookup table.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    by_code: HashMap<(String, String), Vec<Label>>,
}

impl Classifier {
    pub fn from_files(files: &[ClassificationFile]) -> Classifier {
        let mut by_code: HashMap<(String, String), Vec<Label>> = HashMap::new();
        for file in files {
            for rule in &file.rules {
                for code in &rule.codes {
                    let labels = by_code
                        .entry((rule.system.clone(), code.clone()))
                        .or_default();
                    if !labels.contains(&rule.label) {
                        labels.push(rule.label);
                    }
                }
            }
        }
        Classifier { by_code }
    }

    /// Loads every `*.yaml` file in `dir`.
    pub fn load_dir(dir: &std::path::Path) -> anyhow::Result<Classifier> {
        let mut files = Vec::new();
        if dir.is_dir() {
            let mut paths: Vec<_> = std::fs::read_dir(dir)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
                .collect();
            paths.sort();
            for path in paths {
                let text = std::fs::read_to_string(&path)?;
                let file: ClassificationFile = serde_yaml_ng::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                files.push(file);
            }
        }
        Ok(Classifier::from_files(&files))
    }

    pub fn len(&self) -> usize {
        self.by_code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }

    fn visit(&self, value: &Value, out: &mut BTreeSet<Label>) {
        match value {
            Value::Object(map) => {
                if let (Some(Value::String(s)), Some(Value::String(c))) =
                    (map.get("system"), map.get("code"))
                    && let Some(labels) = self.by_code.get(&(s.clone(), c.clone()))
                {
                    out.extend(labels.iter().copied());
                }
                for (key, v) in map {
                    // meta.security is read separately; text and narrative carry no codes.
                    if key != "meta" && key != "text" {
                        self.visit(v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.visit(v, out)),
            _ => {}
        }
    }

    /// Labels implied by any Coding in the resource.
    pub fn classify(&self, resource: &Value) -> BTreeSet<Label> {
        let mut out = BTreeSet::new();
        self.visit(resource, &mut out);
        out
    }
}

/// A resource as policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    /// Index of the entry in the document.
    pub entry: usize,
    /// `Type/id`, or the entry's fullUrl when the resource has no id.
    pub reference: String,
    pub resource_type: String,
    pub class: DataClass,
    /// Labels from `meta.security` and from the codes it carries.
    pub labels: BTreeSet<Label>,
    /// Labels the sender set, as opposed to those derived from codes.
    pub declared: BTreeSet<Label>,
    /// Security codes we do not know: the resource is withheld (deny by default).
    pub unknown_labels: Vec<String>,
}

impl ResourceView {
    /// Reads one resource of a document.
    pub fn of(
        entry: usize,
        full_url: Option<&str>,
        resource: &Value,
        classifier: &Classifier,
    ) -> ResourceView {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let reference = match resource.get("id").and_then(Value::as_str) {
            Some(id) => format!("{resource_type}/{id}"),
            None => full_url
                .map(str::to_string)
                .unwrap_or_else(|| format!("{resource_type}/#{entry}")),
        };
        let mut declared = BTreeSet::new();
        let mut unknown_labels = Vec::new();
        let security = resource
            .get("meta")
            .and_then(|m| m.get("security"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for coding in security {
            let system = coding.get("system").and_then(Value::as_str);
            let code = coding.get("code").and_then(Value::as_str);
            match Label::from_coding(system, code) {
                Ok(Some(l)) => {
                    declared.insert(l);
                }
                Ok(None) => {}
                Err(unknown) => unknown_labels.push(unknown),
            }
        }
        let mut labels = declared.clone();
        labels.extend(classifier.classify(resource));
        ResourceView {
            entry,
            reference,
            class: DataClass::of(&resource_type),
            resource_type,
            labels,
            declared,
            unknown_labels,
        }
    }

    pub fn custody_only(&self) -> bool {
        self.labels.contains(&Label::CustodyOnly)
    }

    pub fn sensitive(&self) -> impl Iterator<Item = Label> + '_ {
        self.labels
            .iter()
            .copied()
            .filter(|l| *l != Label::CustodyOnly)
    }
}

/// Reads every resource of a document Bundle.
pub fn views(bundle: &Value, classifier: &Classifier) -> Vec<ResourceView> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let resource = e.get("resource")?;
                    Some(ResourceView::of(
                        i,
                        e.get("fullUrl").and_then(Value::as_str),
                        resource,
                        classifier,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classifier() -> Classifier {
        Classifier::from_files(&[ClassificationFile {
            title: "t".into(),
            rules: vec![ClassificationRule {
                system: "https://dmd.nhs.uk".into(),
                codes: vec!["322696004".into()],
                label: Label::Eth,
                note: None,
            }],
        }])
    }

    #[test]
    fn an_unlabelled_methadone_prescription_is_labelled_eth_from_its_code() {
        let r = json!({"resourceType": "MedicationRequest", "id": "m1",
            "medicationCodeableConcept": {"coding": [{"system": "https://dmd.nhs.uk", "code": "322696004"}]}});
        let v = ResourceView::of(3, None, &r, &classifier());
        assert!(v.labels.contains(&Label::Eth));
        assert!(v.declared.is_empty());
        assert_eq!(v.reference, "MedicationRequest/m1");
        assert_eq!(v.class, DataClass::Medications);
    }

    #[test]
    fn declared_labels_and_unknown_sensitivity_codes_are_read_from_meta_security() {
        let r = json!({"resourceType": "Condition", "meta": {"security": [
            {"system": ACT_CODE, "code": "PSY"},
            {"system": ACT_CODE, "code": "XYZ"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ]}});
        let v = ResourceView::of(0, Some("urn:uuid:1"), &r, &Classifier::default());
        assert_eq!(v.declared, BTreeSet::from([Label::Psy]));
        assert_eq!(v.unknown_labels, vec![format!("{ACT_CODE}|XYZ")]);
        assert_eq!(v.reference, "urn:uuid:1");
    }
}
