//! Audit entries rendered as FHIR R4 `AuditEvent`, following the IHE Basic Audit Log Patterns
//! (BALP): RESTful interactions as `rest` events with create/read/search subtypes, disclosures to
//! a recipient as export events carrying the decision's explanation, authentication as
//! user-authentication events, and start/stop as application activity.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::AuditEntry;
use crate::domain::systems;

const AUDIT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const CHAIN_EXTENSION: &str =
    "https://throughcare.example.org/fhir/StructureDefinition/audit-chain";

/// BALP type, subtype and action for an audit action.
fn classify(action: &str) -> (Value, Option<Value>, &'static str) {
    let rest = json!({"system": AUDIT_TYPE, "code": "rest", "display": "Restful Operation"});
    let sub = |code: &str| json!({"system": RESTFUL, "code": code, "display": code});
    let dcm = |code: &str, display: &str| json!({"system": DCM, "code": code, "display": display});
    match action {
        "document-received" | "document-repeated" | "input-rejected" => {
            (rest, Some(sub("create")), "C")
        }
        "consent-recorded" | "agreement-changed" | "endpoint-changed" | "endpoint-redirected" => {
            (rest, Some(sub("update")), "U")
        }
        "document-read" => (rest, Some(sub("read")), "R"),
        "searched" => (rest, Some(sub("search-type")), "E"),
        "access-denied" => (rest, None, "E"),
        "sharing-decided" => (rest, Some(sub("operation")), "E"),
        // A disclosure to a recipient (read or delivery), emergency access included.
        "disclosure" | "emergency-access" => (dcm("110106", "Export"), None, "R"),
        "token-issued" | "authentication-failed" => (
            dcm("110114", "User Authentication"),
            Some(dcm("110122", "Login")),
            "E",
        ),
        "gateway-started" => (
            dcm("110100", "Application Activity"),
            Some(dcm("110120", "Application Start")),
            "E",
        ),
        "gateway-stopped" => (
            dcm("110100", "Application Activity"),
            Some(dcm("110121", "Application Stop")),
            "E",
        ),
        _ => (rest, None, "E"),
    }
}

/// Every audit action, for `type`/`subtype` searches.
const ACTIONS: [&str; 17] = [
    "document-received",
    "document-repeated",
    "input-rejected",
    "consent-recorded",
    "document-read",
    "searched",
    "access-denied",
    "agreement-changed",
    "endpoint-changed",
    "endpoint-redirected",
    "sharing-decided",
    "disclosure",
    "emergency-access",
    "token-issued",
    "authentication-failed",
    "gateway-started",
    "gateway-stopped",
];

/// The actions a `type` or `subtype` search token (`code` or `system|code`, or an action name)
/// selects.
pub fn actions_for_code(code: &str) -> Vec<&'static str> {
    let code = code.rsplit('|').next().unwrap_or(code);
    ACTIONS
        .iter()
        .copied()
        .filter(|a| {
            let (t, s, _) = classify(a);
            *a == code
                || t.get("code").and_then(Value::as_str) == Some(code)
                || s.is_some_and(|s| s.get("code").and_then(Value::as_str) == Some(code))
        })
        .collect()
}

/// Renders one entry.
pub fn render(entry: &AuditEntry) -> Value {
    let detail: Value = serde_json::from_str(&entry.detail).unwrap_or(Value::Null);
    let entities: Vec<String> = serde_json::from_str(&entry.entities).unwrap_or_default();
    let (ty, subtype, action) = classify(&entry.action);
    // 0 success; 4 minor failure (a refused request: the gateway did what it should).
    let outcome = if entry.outcome == "success" { "0" } else { "4" };
    let mut agents = Vec::new();
    if let Some(client) = &entry.actor_client {
        let mut who = json!({"display": client});
        if let Some(ods) = &entry.actor_ods {
            who["identifier"] = json!({"system": systems::ODS_ORGANISATION, "value": ods});
        }
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
            "who": who,
            "altId": client,
            "requestor": true
        }));
    }
    if let Some(recipient) = detail.get("recipient").and_then(Value::as_str) {
        agents.push(json!({
            "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"identifier": {"system": systems::ODS_ORGANISATION, "value": recipient}},
            "requestor": false
        }));
    }
    agents.push(json!({
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"display": "Throughcare gateway"},
        "requestor": false
    }));
    let mut entity = Vec::new();
    if let Some(nhs) = &entry.nhs_number {
        entity.push(json!({
            "what": {"identifier": {"system": systems::NHS_NUMBER, "value": nhs}},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1", "display": "Person"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}
        }));
    }
    for e in &entities {
        let mut ent = json!({
            "what": {"reference": e},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"}
        });
        if let Some(decision) = detail.get("decision") {
            ent["detail"] = json!([{"type": "sharing-decision", "valueBase64Binary": STANDARD.encode(decision.to_string())}]);
        }
        entity.push(ent);
    }
    if entities.is_empty()
        && let Some(decision) = detail.get("decision")
    {
        entity.push(json!({
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2", "display": "System Object"},
            "detail": [{"type": "sharing-decision", "valueBase64Binary": STANDARD.encode(decision.to_string())}]
        }));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": entry.seq.to_string(),
        "extension": [{"url": CHAIN_EXTENSION, "extension": [
            {"url": "sequence", "valueInteger": entry.seq},
            {"url": "previousHash", "valueString": entry.prev_hash},
            {"url": "hash", "valueString": entry.hash}
        ]}],
        "type": ty,
        "action": action,
        "recorded": entry.recorded_at,
        "outcome": outcome,
        "outcomeDesc": format!("{}: {}", entry.action, entry.outcome),
        "agent": agents,
        "source": {"observer": {"display": "Throughcare gateway"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
    });
    if let Some(s) = subtype {
        event["subtype"] = json!([s]);
    }
    if detail.get("emergency").and_then(Value::as_bool) == Some(true) {
        event["purposeOfEvent"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT", "display": "Emergency Treatment"}]}]);
    }
    if !entity.is_empty() {
        event["entity"] = Value::Array(entity);
    }
    event
}
