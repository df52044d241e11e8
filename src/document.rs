//! The prison document (DESIGN §5a): checks its shape on the lossless JSON tree and extracts
//! what routing, identity and idempotency need.

use serde_json::Value;

use crate::domain::{CustodyEvent, NhsNumber, NhsNumberError, OdsCode, PrisonNumber, systems};
use crate::fhir::json::{array, get_str, has_coding, identifier_value};
use crate::fhir::outcome::Issue;

/// What intake needs to know about a well-formed document.
#[derive(Debug, Clone)]
pub struct DocumentSummary {
    pub identifier_system: String,
    pub identifier_value: String,
    pub nhs_number: NhsNumber,
    pub event: CustodyEvent,
    pub event_date: String,
    pub author_ods: OdsCode,
    /// Index of the Patient entry.
    pub patient_entry: usize,
    /// The `Bundle.identifier` (system, value) of the document this one corrects
    /// (`Composition.relatesTo` with code `replaces`).
    pub replaces: Option<(String, String)>,
}

/// Why a document does not have the required shape.
#[derive(Debug, Clone)]
pub enum ShapeError {
    /// Errors in the document itself (422).
    Invalid(Vec<Issue>),
    /// The author organisation is not the caller (403).
    AuthorMismatch { author: String },
}

fn issue(code: &'static str, message: impl Into<String>, expression: impl Into<String>) -> Issue {
    Issue::error(code, message)
        .at(expression)
        .with_code(crate::codes::SHAPE)
}

/// Finds the entry a reference points at: by `fullUrl`, or by `Type/id`.
pub fn resolve<'a>(entries: &'a [Value], reference: &str) -> Option<(usize, &'a Value)> {
    entries.iter().enumerate().find_map(|(i, e)| {
        let resource = e.get("resource")?;
        let full_url = e.get("fullUrl").and_then(Value::as_str);
        let type_id = match (
            get_str(resource, &["resourceType"]),
            get_str(resource, &["id"]),
        ) {
            (Some(t), Some(id)) => Some(format!("{t}/{id}")),
            _ => None,
        };
        let matches = full_url == Some(reference)
            || type_id.as_deref() == Some(reference)
            || (!reference.contains(':')
                && full_url.is_some_and(|u| u.ends_with(&format!("/{reference}"))));
        matches.then_some((i, resource))
    })
}

/// Checks the document shape of DESIGN §5a. `caller` is the ODS code of the authenticated sender.
pub fn check(bundle: &Value, caller: &OdsCode) -> Result<DocumentSummary, ShapeError> {
    let mut issues = Vec::new();
    let invalid = |issues: Vec<Issue>| Err(ShapeError::Invalid(issues));

    if get_str(bundle, &["resourceType"]) != Some("Bundle") {
        return invalid(vec![issue(
            "structure",
            "The body must be a FHIR Bundle.",
            "Bundle.resourceType",
        )]);
    }
    if get_str(bundle, &["type"]) != Some("document") {
        issues.push(issue(
            "value",
            "Bundle.type must be 'document'.",
            "Bundle.type",
        ));
    }
    if get_str(bundle, &["timestamp"]).is_none() {
        issues.push(issue(
            "required",
            "A document Bundle must have a timestamp (bdl-10).",
            "Bundle.timestamp",
        ));
    }
    let bundle_id_system = get_str(bundle, &["identifier", "system"]).filter(|s| !s.is_empty());
    let bundle_id_value = get_str(bundle, &["identifier", "value"]).filter(|s| !s.is_empty());
    if bundle_id_system.is_none() || bundle_id_value.is_none() {
        issues.push(issue(
            "required",
            "Bundle.identifier needs a system and a value: with the sender it is the idempotency key.",
            "Bundle.identifier",
        ));
    }
    let entries = array(bundle, "entry");
    for (i, e) in entries.iter().enumerate() {
        if !e.get("resource").is_some_and(Value::is_object) {
            issues.push(issue(
                "required",
                "Every entry must carry a resource.",
                format!("Bundle.entry[{i}].resource"),
            ));
        }
    }
    let composition = entries.first().and_then(|e| e.get("resource"));
    let Some(composition) =
        composition.filter(|c| get_str(c, &["resourceType"]) == Some("Composition"))
    else {
        issues.push(issue(
            "structure",
            "The first entry of a document must be a Composition.",
            "Bundle.entry[0].resource",
        ));
        return invalid(issues);
    };
    let cpath = "Bundle.entry[0].resource";

    // A correction names the document it replaces by its Bundle.identifier.
    let mut replaces = None;
    for (i, r) in array(composition, "relatesTo").iter().enumerate() {
        if get_str(r, &["code"]) != Some("replaces") {
            continue;
        }
        match (
            get_str(r, &["targetIdentifier", "system"]),
            get_str(r, &["targetIdentifier", "value"]),
        ) {
            (Some(s), Some(v)) if replaces.is_none() => {
                replaces = Some((s.to_string(), v.to_string()));
            }
            (Some(_), Some(_)) => issues.push(issue(
                "value",
                "A document replaces one document only.",
                format!("{cpath}.relatesTo[{i}]"),
            )),
            _ => issues.push(issue(
                "required",
                "relatesTo 'replaces' must give targetIdentifier: the Bundle.identifier (system and value) of the document it corrects.",
                format!("{cpath}.relatesTo[{i}].targetIdentifier"),
            )),
        }
    }

    if !composition
        .get("type")
        .is_some_and(|t| has_coding(t, systems::SNOMED, systems::DISCHARGE_SUMMARY))
    {
        issues.push(issue(
            "value",
            "Composition.type must be SNOMED CT 373942005 (discharge summary).",
            format!("{cpath}.type"),
        ));
    }

    let event0 = array(composition, "event").first();
    let mut event = None;
    if let Some(ev) = event0 {
        let codes = ev
            .get("code")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        event = codes.iter().find_map(|concept| {
            array(concept, "coding").iter().find_map(|c| {
                (get_str(c, &["system"]) == Some(systems::CUSTODY_EVENT))
                    .then(|| get_str(c, &["code"]).and_then(CustodyEvent::from_code))
                    .flatten()
            })
        });
        if event.is_none() {
            issues.push(issue(
                "code-invalid",
                "Composition.event[0].code must carry a code from CodeSystem/custody-event \
                 (pre-release, release, court-release, transfer, reception).",
                format!("{cpath}.event[0].code"),
            ));
        }
    } else {
        issues.push(issue(
            "required",
            "Composition.event[0] names the custody event.",
            format!("{cpath}.event"),
        ));
    }
    let event_date = event0
        .and_then(|e| get_str(e, &["period", "start"]))
        .map(str::to_string);
    if event0.is_some() && event_date.is_none() {
        issues.push(issue(
            "required",
            "Composition.event[0].period.start gives the expected or actual date.",
            format!("{cpath}.event[0].period.start"),
        ));
    }

    // Subject: the Patient, with a valid NHS number.
    let mut nhs = None;
    let mut patient_entry = 0;
    match get_str(composition, &["subject", "reference"]).and_then(|r| resolve(entries, r)) {
        Some((i, patient)) if get_str(patient, &["resourceType"]) == Some("Patient") => {
            patient_entry = i;
            let ppath = format!("Bundle.entry[{i}].resource");
            match identifier_value(patient, systems::NHS_NUMBER) {
                Some((j, value)) => match NhsNumber::parse(value) {
                    Ok(n) => nhs = Some(n),
                    Err(e) => issues.push(issue(
                        "value",
                        match e {
                            NhsNumberError::Format => "The NHS number must be ten digits.",
                            NhsNumberError::CheckDigit => {
                                "The NHS number fails the Modulus 11 check."
                            }
                        },
                        format!("{ppath}.identifier[{j}].value"),
                    )),
                },
                None => issues.push(issue(
                    "required",
                    "The Patient needs an NHS number (https://fhir.nhs.uk/Id/nhs-number).",
                    format!("{ppath}.identifier"),
                )),
            }
            if let Some((j, value)) = identifier_value(patient, systems::PRISON_NUMBER)
                && PrisonNumber::parse(value).is_none()
            {
                issues.push(issue(
                    "value",
                    "The prison number must have the NOMIS format A1234BC.",
                    format!("{ppath}.identifier[{j}].value"),
                ));
            }
        }
        _ => issues.push(issue(
            "required",
            "Composition.subject must reference a Patient entry in the document.",
            format!("{cpath}.subject"),
        )),
    }

    // Author: the prison healthcare Organization, identified by ODS code.
    let mut author = None;
    for (k, a) in array(composition, "author").iter().enumerate() {
        let Some(reference) = get_str(a, &["reference"]) else {
            continue;
        };
        if let Some((_, org)) = resolve(entries, reference)
            && get_str(org, &["resourceType"]) == Some("Organization")
            && let Some((_, ods)) = identifier_value(org, systems::ODS_ORGANISATION)
        {
            author = Some((k, ods.to_string()));
            break;
        }
    }
    let author = match author {
        Some((k, ods)) => match OdsCode::parse(&ods) {
            Ok(code) => Some(code),
            Err(msg) => {
                issues.push(issue("value", msg, format!("{cpath}.author[{k}]")));
                None
            }
        },
        None => {
            issues.push(issue(
                "required",
                "Composition.author must reference the prison healthcare Organization, identified by its ODS code.",
                format!("{cpath}.author"),
            ));
            None
        }
    };

    if !issues.is_empty() {
        return invalid(issues);
    }
    let (Some(author_ods), Some(nhs_number), Some(event), Some(event_date), Some(sys), Some(val)) = (
        author,
        nhs,
        event,
        event_date,
        bundle_id_system,
        bundle_id_value,
    ) else {
        return invalid(vec![issue(
            "structure",
            "The document is incomplete.",
            "Bundle",
        )]);
    };
    if &author_ods != caller {
        return Err(ShapeError::AuthorMismatch {
            author: author_ods.to_string(),
        });
    }
    Ok(DocumentSummary {
        identifier_system: sys.to_string(),
        identifier_value: val.to_string(),
        nhs_number,
        event,
        event_date,
        author_ods,
        patient_entry,
        replaces,
    })
}
