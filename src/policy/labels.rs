//! Labels and data classes: what kind of content a resource is, read from `meta.security` (its
//! own and its contained resources'), from its codes (directly, and through the ConceptMaps a
//! local code is translated by), and from its free text (a curated term list per label), so a
//! sender that forgot a label does not leak it. Over-withholding is the safe failure: a term
//! match labels the resource even when the text says the opposite ("no methadone").

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

/// v3-ActCode as STU3 names it (GP Connect); the same code system as [`ACT_CODE`].
pub const ACT_CODE_STU3: &str = "http://hl7.org/fhir/v3/ActCode";
/// v3-Confidentiality (R4).
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// v3-Confidentiality as STU3 names it.
pub const CONFIDENTIALITY_STU3: &str = "http://hl7.org/fhir/v3/Confidentiality";

/// The R4 URI of a code system that STU3 names differently; other systems as given.
pub fn canonical_system(system: &str) -> &str {
    match system {
        ACT_CODE_STU3 => ACT_CODE,
        CONFIDENTIALITY_STU3 => CONFIDENTIALITY,
        other => other,
    }
}

/// How policy reads one `meta.security` coding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityCode {
    /// A sensitivity or custody label.
    Label(Label),
    /// Confidentiality `R` (restricted) or `V` (very restricted): withheld from every recipient
    /// that is not a prison unless the agreement names the code.
    Restricted(String),
    /// Confidentiality `U`, `L`, `M`, `N`: ordinary care.
    Ordinary,
    /// Anything else (`system|code`): withheld unless the agreement names it (deny by default).
    Unknown(String),
}

impl SecurityCode {
    pub fn read(system: Option<&str>, code: Option<&str>) -> SecurityCode {
        let unknown = || {
            SecurityCode::Unknown(format!(
                "{}|{}",
                system.unwrap_or("(no system)"),
                code.unwrap_or("(no code)")
            ))
        };
        let (Some(system), Some(code)) = (system, code) else {
            return unknown();
        };
        match canonical_system(system) {
            ACT_CODE | systems::CUSTODY_LABEL => match Label::from_coding(Some(system), Some(code))
            {
                Ok(Some(l)) => SecurityCode::Label(l),
                _ => unknown(),
            },
            CONFIDENTIALITY => match code {
                "U" | "L" | "M" | "N" => SecurityCode::Ordinary,
                "R" | "V" => SecurityCode::Restricted(code.to_string()),
                _ => unknown(),
            },
            _ => unknown(),
        }
    }
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
        match (system.map(canonical_system), code) {
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

/// Words and phrases whose presence in free text implies `label`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermRule {
    pub label: Label,
    pub terms: Vec<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// A classification file (`mappings/labels/*.yaml`): code rules, term rules, or both.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationFile {
    pub title: String,
    #[serde(default)]
    pub rules: Vec<ClassificationRule>,
    #[serde(default)]
    pub terms: Vec<TermRule>,
}

/// A term found in a resource's free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermMatch {
    pub label: Label,
    /// The term as listed.
    pub term: String,
    /// Where, relative to the resource (`description`, `note[0].text`, `text.div`).
    pub path: String,
}

/// Labels implied by codes and by free-text terms, compiled into lookup tables.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    /// Keyed by (canonical system, code).
    by_code: HashMap<(String, String), Vec<Label>>,
    /// (label, the term as listed, the term normalised: lower case, single spaces).
    terms: Vec<(Label, String, String)>,
}

/// Keys whose string values are free text a person reads: titles, descriptions, display
/// strings, `text` (CodeableConcept.text, Annotation.text, Dosage.text), comments and the
/// narrative's `div`.
const FREE_TEXT_KEYS: &[&str] = &["title", "description", "display", "text", "comment", "div"];

/// Lower case, markup removed, runs of anything that is not a letter or a digit as one space,
/// so that terms match on word boundaries: " methadone " in " daily methadone 30 mg ".
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(' ');
    let mut in_tag = false;
    let mut last_space = true;
    for ch in text.chars() {
        if ch == '<' {
            in_tag = true;
            continue;
        }
        if in_tag {
            if ch == '>' {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            continue;
        }
        if ch.is_alphanumeric() {
            out.extend(ch.to_lowercase());
            last_space = false;
        } else if !last_space {
            out.push(' ');
            last_space = true;
        }
    }
    if !last_space {
        out.push(' ');
    }
    out
}

impl Classifier {
    pub fn from_files(files: &[ClassificationFile]) -> Classifier {
        let mut by_code: HashMap<(String, String), Vec<Label>> = HashMap::new();
        let mut terms = Vec::new();
        for file in files {
            for rule in &file.rules {
                for code in &rule.codes {
                    let labels = by_code
                        .entry((canonical_system(&rule.system).to_string(), code.clone()))
                        .or_default();
                    if !labels.contains(&rule.label) {
                        labels.push(rule.label);
                    }
                }
            }
            for rule in &file.terms {
                for term in &rule.terms {
                    let normalised = normalise(term);
                    if normalised.trim().is_empty() {
                        continue;
                    }
                    terms.push((rule.label, term.clone(), normalised));
                }
            }
        }
        Classifier { by_code, terms }
    }

    /// Labels, too, the local codes that the ConceptMaps turn into labelled codes (and the codes
    /// that labelled codes turn into): `pairs` are `(source system, source code, target system,
    /// target code)`, as `Translator::code_pairs` gives them.
    pub fn extend_with_code_pairs(&mut self, pairs: &[(String, String, String, String)]) {
        let key = |s: &str, c: &str| (canonical_system(s).to_string(), c.to_string());
        let mut added: Vec<((String, String), Label)> = Vec::new();
        for (ss, sc, ts, tc) in pairs {
            for (from, to) in [(key(ts, tc), key(ss, sc)), (key(ss, sc), key(ts, tc))] {
                if let Some(labels) = self.by_code.get(&from) {
                    added.extend(labels.iter().map(|l| (to.clone(), *l)));
                }
            }
        }
        for (k, l) in added {
            let labels = self.by_code.entry(k).or_default();
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
    }

    /// The terms of each label found in `text` (each label once, with its first term). A word
    /// in the shape of a NOMIS prison number (`A1234BC`) is custody information wherever it is
    /// written.
    pub fn terms_in(&self, text: &str) -> Vec<(Label, &str)> {
        if self.terms.is_empty() {
            return Vec::new();
        }
        let haystack = normalise(text);
        let mut out: Vec<(Label, &str)> = Vec::new();
        if haystack
            .split(' ')
            .any(|w| crate::domain::PrisonNumber::parse(&w.to_ascii_uppercase()).is_some())
        {
            out.push((Label::CustodyOnly, "a prison number"));
        }
        for (label, term, needle) in &self.terms {
            if out.iter().any(|(l, _)| l == label) {
                continue;
            }
            if haystack.contains(needle.as_str()) {
                out.push((*label, term.as_str()));
            }
        }
        out
    }

    /// Every term match in a resource's free text (contained resources included).
    pub fn text_matches(&self, resource: &Value) -> Vec<TermMatch> {
        let mut out = Vec::new();
        if !self.terms.is_empty() {
            self.visit_text(resource, "", &mut out);
        }
        out
    }

    fn visit_text(&self, value: &Value, path: &str, out: &mut Vec<TermMatch>) {
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "meta" {
                        continue;
                    }
                    if let Value::String(text) = v
                        && FREE_TEXT_KEYS.contains(&key.as_str())
                    {
                        for (label, term) in self.terms_in(text) {
                            out.push(TermMatch {
                                label,
                                term: term.to_string(),
                                path: join(key),
                            });
                        }
                    } else {
                        self.visit_text(v, &join(key), out);
                    }
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.visit_text(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
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
                    && let Some(labels) = self
                        .by_code
                        .get(&(canonical_system(s).to_string(), c.clone()))
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
    /// Security codes we do not know (`system|code`): the resource is withheld unless the
    /// agreement names the code (deny by default).
    pub unknown_labels: Vec<String>,
    /// Confidentiality `R`/`V` codes: withheld from non-prisons unless the agreement names them.
    pub restricted: BTreeSet<String>,
    /// Terms found in the free text. For most resources their labels are in `labels`; for the
    /// core class (the frame every copy needs) they are not: the text is removed instead, for
    /// recipients the label is not permitted to.
    pub term_matches: Vec<TermMatch>,
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
        let mut restricted = BTreeSet::new();
        // The resource's own labels and those of the resources it contains.
        let contained = resource
            .get("contained")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let security = std::iter::once(resource)
            .chain(contained.iter())
            .filter_map(|r| r.get("meta").and_then(|m| m.get("security")))
            .filter_map(Value::as_array)
            .flatten();
        for coding in security {
            let system = coding.get("system").and_then(Value::as_str);
            let code = coding.get("code").and_then(Value::as_str);
            match SecurityCode::read(system, code) {
                SecurityCode::Label(l) => {
                    declared.insert(l);
                }
                SecurityCode::Restricted(c) => {
                    restricted.insert(c);
                }
                SecurityCode::Ordinary => {}
                SecurityCode::Unknown(u) => unknown_labels.push(u),
            }
        }
        let class = DataClass::of(&resource_type);
        let mut labels = declared.clone();
        labels.extend(classifier.classify(resource));
        let term_matches = classifier.text_matches(resource);
        if class != DataClass::Core {
            labels.extend(term_matches.iter().map(|m| m.label));
        }
        ResourceView {
            entry,
            reference,
            class,
            resource_type,
            labels,
            declared,
            unknown_labels,
            restricted,
            term_matches,
        }
    }

    pub fn custody_only(&self) -> bool {
        self.labels.contains(&Label::CustodyOnly)
    }

    /// The free-text term that gave the resource `label`, if a term (not a code or a declared
    /// label) did.
    pub fn term_for(&self, label: Label) -> Option<&TermMatch> {
        self.term_matches.iter().find(|m| m.label == label)
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
            terms: vec![TermRule {
                label: Label::Eth,
                terms: vec!["methadone".into(), "opiate substitution".into()],
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

    #[test]
    fn free_text_terms_label_a_resource_on_word_boundaries_case_and_markup_ignored() {
        let c = classifier();
        let plan = json!({"resourceType": "CarePlan", "id": "p",
            "description": "Continuity of Opiate  Substitution treatment after release"});
        let v = ResourceView::of(1, None, &plan, &c);
        assert!(v.labels.contains(&Label::Eth), "{v:?}");
        assert_eq!(
            v.term_for(Label::Eth).map(|m| m.path.as_str()),
            Some("description")
        );
        let note = json!({"resourceType": "MedicationRequest", "note": [{"text": "METHADONE, 30mg daily"}]});
        assert_eq!(
            ResourceView::of(0, None, &note, &c).term_matches[0].path,
            "note[0].text"
        );
        let div = json!({"resourceType": "Condition", "text": {"status": "generated",
            "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><b>Methadone</b></div>"}});
        assert!(
            ResourceView::of(0, None, &div, &c)
                .labels
                .contains(&Label::Eth)
        );
        // Not on part of a word.
        let near = json!({"resourceType": "CarePlan", "description": "methadones, premethadone"});
        assert!(ResourceView::of(0, None, &near, &c).labels.is_empty());
        // In the frame every copy needs, a term does not label the resource: its text is
        // removed instead (the decision says so).
        let patient = json!({"resourceType": "Patient", "text": {"status": "generated",
            "div": "<div>on methadone</div>"}});
        let v = ResourceView::of(0, None, &patient, &c);
        assert!(v.labels.is_empty());
        assert_eq!(v.term_matches[0].path, "text.div");
    }

    #[test]
    fn a_prison_number_in_free_text_is_custody_information() {
        let c = classifier();
        let note = json!({"resourceType": "Condition", "note": [{"text": "Seen with a1234bc on the wing"}]});
        let v = ResourceView::of(0, None, &note, &c);
        assert!(v.custody_only(), "{v:?}");
        let fine =
            json!({"resourceType": "Condition", "note": [{"text": "Dose 1234 mg, code AB12345"}]});
        assert!(!ResourceView::of(0, None, &fine, &c).custody_only());
    }

    #[test]
    fn labels_are_read_under_every_uri_of_their_code_system_and_in_contained_resources() {
        let c = Classifier::default();
        let stu3 = json!({"resourceType": "Condition", "meta": {"security": [
            {"system": ACT_CODE_STU3, "code": "HIV"},
            {"system": CONFIDENTIALITY_STU3, "code": "V"},
            {"system": CONFIDENTIALITY, "code": "N"}]}});
        let v = ResourceView::of(0, None, &stu3, &c);
        assert_eq!(v.declared, BTreeSet::from([Label::Hiv]));
        assert_eq!(v.restricted, BTreeSet::from(["V".to_string()]));
        assert!(v.unknown_labels.is_empty(), "{v:?}");
        let contained = json!({"resourceType": "MedicationRequest", "contained": [
            {"resourceType": "Medication", "meta": {"security": [{"system": ACT_CODE, "code": "ETH"}]}}]});
        assert!(
            ResourceView::of(0, None, &contained, &c)
                .labels
                .contains(&Label::Eth)
        );
        let other = json!({"resourceType": "Condition", "meta": {"security": [
            {"system": "https://example.org/labels", "code": "secret"}]}});
        assert_eq!(
            ResourceView::of(0, None, &other, &c).unknown_labels,
            vec!["https://example.org/labels|secret".to_string()]
        );
    }

    #[test]
    fn a_local_code_the_concept_maps_turn_into_a_labelled_code_is_labelled() {
        let mut c = classifier();
        c.extend_with_code_pairs(&[(
            "https://local.example/drugs".into(),
            "METH1".into(),
            "https://dmd.nhs.uk".into(),
            "322696004".into(),
        )]);
        let r = json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {
            "coding": [{"system": "https://local.example/drugs", "code": "METH1"}]}});
        assert!(
            ResourceView::of(0, None, &r, &c)
                .labels
                .contains(&Label::Eth)
        );
    }
}
