//! Pull: what a recipient may see of a patient, across every stored document, with policy
//! applied at the moment of reading (DESIGN §3 "Pull"). The gateway's Patient has the NHS number
//! as its logical id.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::domain::{Moment, NhsNumber, Role, systems};
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::policy::Purpose;
use crate::recipient::{CopyRequest, RecipientCopy, Subject, copy_for};
use crate::store::StoredDocument;
use crate::translate::Target;

/// What a reader may have of one stored document.
enum Seen {
    Copy(Box<RecipientCopy>),
    /// Nothing, and the reader is not told why (the document's existence is not disclosed).
    Nothing,
    /// Nothing, because the patient's consent withholds the whole record from this reader.
    ConsentWithholds,
}

/// Makes `principal`'s copy of a stored document now, for `purpose`, in `target`, and records
/// the decision (a disclosure when anything is shared).
async fn copy_of(
    app: &App,
    principal: &Principal,
    stored: &StoredDocument,
    purpose: Purpose,
    target: Target,
) -> Result<Seen, ApiError> {
    let subject = Subject::stored(app, stored).await?;
    let recipient = subject.recipient(app, &principal.ods, Some(principal.role));
    let copy = copy_for(
        app,
        &subject,
        &recipient,
        &CopyRequest {
            purpose,
            moment: Moment::Read,
            target,
            break_glass_allowed: principal.break_glass,
            actor: principal.actor(),
        },
    );
    app.store.append_audit(vec![copy.audit.clone()]).await?;
    if copy.consent_withholds_all() {
        return Ok(Seen::ConsentWithholds);
    }
    if !copy.shares_anything() {
        return Ok(Seen::Nothing);
    }
    // The same rule as a delivery's (issue 12 item 3): a copy held for its clinical content or
    // a medicine's safety element is not handed out; the refusal names the elements, and is
    // audited twice over (the decision as `copy-held` above, the 422 as `input-rejected`).
    if copy.verdict.is_held() {
        return Err(held_refusal(&copy));
    }
    if let Some(e) = copy.translation_error {
        return Err(e.into());
    }
    Ok(Seen::Copy(Box::new(copy)))
}

/// 422 for a held copy: one issue per reason, each naming its element.
fn held_refusal(copy: &RecipientCopy) -> ApiError {
    ApiError::Unprocessable(
        copy.verdict
            .reasons()
            .iter()
            .map(|r| {
                let issue = Issue::error(
                    "business-rule",
                    format!(
                        "This {} copy is held, not handed out: {}.",
                        copy.target, r.description
                    ),
                )
                .with_code(codes::PULL_HELD);
                match &r.expression {
                    Some(e) => issue.at(e.clone()),
                    None => issue,
                }
            })
            .collect(),
    )
}

/// The answer to a reader whose every document the patient's consent withholds: 403, and no
/// more than that (even the fact of a custody document is custody information).
fn consent_refusal() -> ApiError {
    ApiError::forbidden(
        codes::CONSENT_WITHHOLDS,
        "The patient's choices do not permit sharing their record with this organisation.",
    )
}

/// Refuses break-glass to a client whose registration does not allow it.
fn check_purpose(principal: &Principal, purpose: Purpose) -> Result<(), ApiError> {
    if purpose == Purpose::EmergencyTreat && !principal.break_glass {
        return Err(ApiError::forbidden(
            codes::BREAK_GLASS,
            "Emergency access (ETREAT) is not allowed for this client's registration.",
        ));
    }
    Ok(())
}

/// The profile a reader gets its copy in: the `_profile` it asked for (a prison alone may read
/// the prison profile), else `fhirVersion=3.0` in its Accept header (GP Connect), else its
/// registration, else the default for its role.
pub fn reader_target(
    app: &App,
    principal: &Principal,
    profile: Option<&str>,
    accept: Option<&str>,
) -> Result<Target, ApiError> {
    if let Some(p) = profile {
        return match p {
            "uk-core-r4" | "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Bundle" => {
                Ok(Target::UkCoreR4)
            }
            "gp-connect-stu3"
            | "https://fhir.nhs.uk/STU3/StructureDefinition/GPConnect-StructuredRecord-Bundle-1" => {
                Ok(Target::GpConnectStu3)
            }
            "prison" if principal.role == Role::Prison => Ok(Target::Prison),
            other => Err(ApiError::bad_request(
                codes::READ_PROFILE,
                format!(
                    "_profile {other:?} is not a profile this client can read (uk-core-r4, gp-connect-stu3)"
                ),
            )),
        };
    }
    if accept.is_some_and(|a| a.contains("fhirVersion=3.0")) {
        return Ok(Target::GpConnectStu3);
    }
    let registered = app
        .tokens
        .clients
        .get(&principal.client_id)
        .and_then(|c| c.registration.profile.as_deref())
        .and_then(|p| p.parse::<Target>().ok());
    Ok(crate::recipient::default_target(registered, principal.role))
}

/// What a read of `Bundle/{id}` returns.
pub enum DocumentRead {
    /// The sending organisation reads the document exactly as sent.
    AsSent(Vec<u8>),
    /// Anyone else reads its copy, with policy applied now, in its profile.
    Copy {
        body: String,
        withheld: usize,
        emergency: bool,
        /// Administrative elements of the copy that do not conform to its profiles.
        warnings: Vec<Issue>,
    },
}

/// `GET /fhir/Bundle/{id}`.
pub async fn read_document(
    app: &App,
    principal: &Principal,
    id: &str,
    purpose: Purpose,
    target: Target,
) -> Result<DocumentRead, ApiError> {
    let not_found = || {
        ApiError::not_found(format!(
            "Bundle/{id} is not known, or not visible to this client."
        ))
    };
    let doc = app.store.document(id).await?.ok_or_else(not_found)?;
    if doc.sender_ods == principal.ods.as_str() {
        app.audit
            .record(AuditEvent::DocumentRead {
                actor: principal.actor(),
                document_id: doc.id.clone(),
                nhs_number: doc.nhs_number.clone(),
            })
            .await?;
        return Ok(DocumentRead::AsSent(doc.body));
    }
    check_purpose(principal, purpose)?;
    // Anyone else reads what policy allows now (consent may have changed since intake).
    let copy = match copy_of(app, principal, &doc, purpose, target).await? {
        Seen::Copy(c) => c,
        Seen::Nothing => return Err(not_found()),
        Seen::ConsentWithholds => return Err(consent_refusal()),
    };
    Ok(DocumentRead::Copy {
        withheld: copy.decision.withheld().count(),
        emergency: copy.decision.emergency,
        warnings: copy.verdict.warnings().to_vec(),
        body: copy.copy.map(|c| c.to_string()).unwrap_or_default(),
    })
}

/// What `$everything` hands out: the entries, and the administrative warnings of the copies
/// they came from.
pub struct Everything {
    pub entries: Vec<Value>,
    pub warnings: Vec<Issue>,
}

/// The resources of every document about `nhs` that `principal` may see now, newest document
/// first, each resource once (by `Type/id`, the newest copy winning). Each document's copy is
/// made in `target` (the caller's profile) before its resources are taken. A copy that is held
/// refuses the whole answer (422): a record missing a held document's medicines would read as
/// complete.
pub async fn everything(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
    purpose: Purpose,
    target: Target,
) -> Result<Everything, ApiError> {
    check_purpose(principal, purpose)?;
    let documents = app.store.documents_for(nhs.as_str()).await?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    let mut withheld_by_consent = false;
    for stored in &documents {
        let copy = match copy_of(app, principal, stored, purpose, target).await? {
            Seen::Copy(c) => c,
            Seen::Nothing => continue,
            Seen::ConsentWithholds => {
                withheld_by_consent = true;
                continue;
            }
        };
        warnings.extend(copy.verdict.warnings().iter().cloned());
        let Some(translated) = copy.copy else {
            continue;
        };
        for entry in translated
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(resource) = entry.get("resource") else {
                continue;
            };
            let key = match (
                resource.get("resourceType").and_then(Value::as_str),
                resource.get("id").and_then(Value::as_str),
            ) {
                (Some(t), Some(id)) => format!("{t}/{id}"),
                _ => entry
                    .get("fullUrl")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            };
            if seen.insert(key) {
                out.push(entry.clone());
            }
        }
    }
    if out.is_empty() && withheld_by_consent {
        return Err(consent_refusal());
    }
    Ok(Everything {
        entries: out,
        warnings,
    })
}

/// The Patient as `principal` may see it (from the newest document that shares it), in the
/// caller's profile, with the NHS number as its id.
pub async fn patient(
    app: &App,
    principal: &Principal,
    nhs: &NhsNumber,
    target: Target,
) -> Result<Option<Value>, ApiError> {
    let found = everything(app, principal, nhs, Purpose::Treat, target).await?;
    Ok(found
        .entries
        .into_iter()
        .filter_map(|e| e.get("resource").cloned())
        .find(|r| {
            r.get("resourceType").and_then(Value::as_str) == Some("Patient")
                && crate::fhir::json::identifier_value(r, systems::NHS_NUMBER).map(|(_, v)| v)
                    == Some(nhs.as_str())
        })
        .map(|mut p| {
            p["id"] = json!(nhs.as_str());
            p
        }))
}

/// `POST /fhir/Patient/$gpc.getstructuredrecord`: the newest document the caller may see, with
/// policy applied now, translated to GP Connect, holding the patient, organisations,
/// practitioners and the Lists asked for (`include*` parameters) with what they list.
pub async fn gpc_structured_record(
    app: &App,
    principal: &Principal,
    params: &Value,
) -> Result<Value, ApiError> {
    let invalid = |message: String| {
        ApiError::unprocessable(codes::OPERATION_PARAMETERS, message, "Parameters.parameter")
    };
    let nhs = crate::fhir::json::parameter(params, "patientNHSNumber")
        .and_then(|p| p.pointer("/valueIdentifier/value"))
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("Give patientNHSNumber as a valueIdentifier.".into()))?;
    let nhs = NhsNumber::parse(nhs).map_err(|e| invalid(format!("patientNHSNumber: {e}")))?;
    let lists = gpc_requested_lists(params).map_err(invalid)?;
    let documents = app.store.documents_for(nhs.as_str()).await?;
    let mut withheld_by_consent = false;
    for stored in &documents {
        match copy_of(
            app,
            principal,
            stored,
            Purpose::Treat,
            Target::GpConnectStu3,
        )
        .await?
        {
            Seen::Copy(copy) => {
                let warnings = copy.verdict.warnings().to_vec();
                if let Some(mut record) = copy.copy {
                    // Only the clinical areas asked for, as a GP Connect provider answers.
                    gpc_select(&mut record, &lists);
                    // Administrative elements that do not conform travel as an
                    // OperationOutcome in the record, as GP Connect providers report partial
                    // answers.
                    if !warnings.is_empty()
                        && let Some(entries) = record.get_mut("entry").and_then(Value::as_array_mut)
                    {
                        entries.push(json!({
                            "resource": crate::fhir::outcome::operation_outcome(&warnings)
                        }));
                    }
                    return Ok(record);
                }
            }
            Seen::Nothing => {}
            Seen::ConsentWithholds => withheld_by_consent = true,
        }
    }
    if withheld_by_consent {
        return Err(consent_refusal());
    }
    Err(ApiError::not_found(
        "No record of this patient is visible to this client.",
    ))
}

/// A GP Connect Access Record Structured parameter, the SNOMED CT List code it asks for, and
/// optionally a further List code with the boolean part that asks for it.
type ClinicalArea = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

const GPC_CLINICAL_AREAS: &[ClinicalArea] = &[
    (
        "includeAllergies",
        "886921000000105",
        Some(("1103671000000101", "includeResolvedAllergies")),
    ),
    ("includeMedication", "933361000000108", None),
    ("includeProblems", "717711000000103", None),
    ("includeConsultations", "1149501000000101", None),
    ("includeImmunisations", "1102181000000102", None),
    ("includeUncategorisedData", "826501000000100", None),
    ("includeInvestigations", "887191000000108", None),
    ("includeReferrals", "792931000000107", None),
];

/// Resource types a structured record carries whatever is asked for.
const GPC_ALWAYS: &[&str] = &[
    "Patient",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Location",
];

/// The List codes a GP Connect structured-record request asks for, or the name of a parameter
/// this gateway does not know (the request is then refused).
pub fn gpc_requested_lists(params: &Value) -> Result<HashSet<&'static str>, String> {
    let mut codes = HashSet::new();
    for p in params
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
        if name == "patientNHSNumber" {
            continue;
        }
        let Some((_, code, extra)) = GPC_CLINICAL_AREAS.iter().find(|(n, _, _)| *n == name) else {
            return Err(format!(
                "parameter {name:?} is not a GP Connect structured-record parameter this gateway answers"
            ));
        };
        codes.insert(*code);
        if let Some((extra_code, part)) = extra {
            let wanted = p
                .get("part")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|x| {
                    x.get("name").and_then(Value::as_str) == Some(part)
                        && x.get("valueBoolean") == Some(&Value::Bool(true))
                });
            if wanted {
                codes.insert(*extra_code);
            }
        }
    }
    Ok(codes)
}

/// Keeps, in a GP Connect structured record, the Lists asked for, the resources they list (and
/// the Medications those refer to), and the patient, organisations and practitioners; the
/// rest is left out, as a GP Connect provider answers only the clinical areas requested.
pub fn gpc_select(bundle: &mut Value, lists: &HashSet<&str>) {
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return;
    };
    let key = |r: &Value| {
        format!(
            "{}/{}",
            r.get("resourceType").and_then(Value::as_str).unwrap_or(""),
            r.get("id").and_then(Value::as_str).unwrap_or("")
        )
    };
    let mut keep: HashSet<String> = HashSet::new();
    for e in entries.iter() {
        let r = &e["resource"];
        if r["resourceType"] == "List"
            && r.pointer("/code/coding/0/code")
                .and_then(Value::as_str)
                .is_some_and(|c| lists.contains(c))
        {
            keep.insert(key(r));
            for item in r["entry"].as_array().into_iter().flatten() {
                if let Some(reference) = item.pointer("/item/reference").and_then(Value::as_str) {
                    keep.insert(reference.to_owned());
                }
            }
        }
    }
    // Medications referred to by the medicines kept.
    let mut medications = Vec::new();
    for e in entries.iter() {
        let r = &e["resource"];
        if keep.contains(&key(r))
            && let Some(m) = r
                .pointer("/medicationReference/reference")
                .and_then(Value::as_str)
        {
            medications.push(m.to_owned());
        }
    }
    keep.extend(medications);
    entries.retain(|e| {
        let r = &e["resource"];
        let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or("");
        GPC_ALWAYS.contains(&rt) || keep.contains(&key(r))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Value {
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p"}},
            {"resource": {"resourceType": "Organization", "id": "o"}},
            {"resource": {"resourceType": "List", "id": "l1", "code": {"coding": [{"code": "886921000000105"}]},
                "entry": [{"item": {"reference": "AllergyIntolerance/a"}}]}},
            {"resource": {"resourceType": "List", "id": "l2", "code": {"coding": [{"code": "933361000000108"}]},
                "entry": [{"item": {"reference": "MedicationStatement/s"}}]}},
            {"resource": {"resourceType": "AllergyIntolerance", "id": "a"}},
            {"resource": {"resourceType": "MedicationStatement", "id": "s", "medicationReference": {"reference": "Medication/m"}}},
            {"resource": {"resourceType": "Medication", "id": "m"}},
            {"resource": {"resourceType": "Condition", "id": "c"}}
        ]})
    }

    fn kept(b: &Value) -> Vec<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{}/{}",
                    e["resource"]["resourceType"].as_str().unwrap(),
                    e["resource"]["id"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn only_the_clinical_areas_asked_for_are_answered() {
        let params = json!({"parameter": [
            {"name": "patientNHSNumber", "valueIdentifier": {"value": "9990000018"}},
            {"name": "includeMedication"}
        ]});
        let lists = gpc_requested_lists(&params).unwrap();
        let mut b = record();
        gpc_select(&mut b, &lists);
        assert_eq!(
            kept(&b),
            [
                "Patient/p",
                "Organization/o",
                "List/l2",
                "MedicationStatement/s",
                "Medication/m"
            ]
        );
        // Nothing clinical asked for: the patient and the organisations only.
        let only =
            gpc_requested_lists(&json!({"parameter": [{"name": "patientNHSNumber"}]})).unwrap();
        let mut b = record();
        gpc_select(&mut b, &only);
        assert_eq!(kept(&b), ["Patient/p", "Organization/o"]);
    }

    #[test]
    fn resolved_allergies_come_only_when_asked_for_and_unknown_parameters_are_refused() {
        let params = json!({"parameter": [{"name": "includeAllergies", "part": [
            {"name": "includeResolvedAllergies", "valueBoolean": true}]}]});
        let lists = gpc_requested_lists(&params).unwrap();
        assert!(lists.contains("1103671000000101") && lists.contains("886921000000105"));
        let params = json!({"parameter": [{"name": "includeAllergies", "part": [
            {"name": "includeResolvedAllergies", "valueBoolean": false}]}]});
        assert!(
            !gpc_requested_lists(&params)
                .unwrap()
                .contains("1103671000000101")
        );
        let err = gpc_requested_lists(&json!({"parameter": [{"name": "includeEverything"}]}))
            .unwrap_err();
        assert!(err.contains("includeEverything"), "{err}");
    }
}
