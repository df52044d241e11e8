//! Deliveries rendered as FHIR R4 Task.

use serde_json::{Value, json};

use crate::domain::systems;
use crate::store::DeliveryRecord;

const BUSINESS_STATUS: &str = "https://throughcare.example.org/fhir/CodeSystem/delivery-status";
const TASK_CODE: &str = "https://throughcare.example.org/fhir/CodeSystem/task-code";

pub fn render(d: &DeliveryRecord, public_url: &str) -> Value {
    let mut task = json!({
        "resourceType": "Task",
        "id": d.id,
        "meta": {"lastUpdated": d.updated_at},
        "identifier": [{"system": "https://throughcare.example.org/fhir/Id/delivery", "value": d.id}],
        "status": d.status,
        "businessStatus": {"coding": [{"system": BUSINESS_STATUS, "code": d.business_status}]},
        "intent": "order",
        "code": {"coding": [{"system": TASK_CODE, "code": "deliver-document", "display": "Deliver a prison document to a community recipient"}]},
        "focus": {"reference": format!("{public_url}/fhir/Bundle/{}", d.document_id)},
        "for": {"identifier": {"system": systems::NHS_NUMBER, "value": d.nhs_number}},
        "authoredOn": d.created_at,
        "lastModified": d.updated_at,
        "requester": {"identifier": {"system": systems::ODS_ORGANISATION, "value": d.sender_ods}},
        "owner": {"identifier": {"system": systems::ODS_ORGANISATION, "value": d.recipient_ods}},
        "input": [{"type": {"text": "attempts"}, "valueInteger": d.attempts}],
    });
    if let Some(reason) = &d.reason {
        task["statusReason"] = json!({"text": reason});
    }
    if let Some(release) = &d.release_date {
        task["restriction"] = json!({"period": {"end": release}});
    }
    let mut notes = Vec::new();
    if d.at_risk {
        notes.push(
            json!({"text": "AT RISK: not delivered within the margin before the release date"}),
        );
    }
    if d.needs_gp_registration {
        notes.push(json!({"text": "The person has no registered GP: arrange GP registration"}));
    }
    if !notes.is_empty() {
        task["note"] = Value::Array(notes);
    }
    task
}
