//! Deliveries rendered as FHIR R4 Task.

use serde_json::{Value, json};

use crate::domain::systems;
use crate::store::DeliveryRecord;

const BUSINESS_STATUS: &str = "https://throughcare.example.org/fhir/CodeSystem/delivery-status";
const TASK_CODE: &str = "https://throughcare.example.org/fhir/CodeSystem/task-code";
const TASK_OUTPUT: &str = "https://throughcare.example.org/fhir/CodeSystem/task-output";

/// The loss report of the delivery's copy as `Task.output`: a count, then one entry per element
/// the recipient's profile could not carry, then one per element a mapping rule derived or
/// marked absent (an assumption, `mappings/README.md`). Nothing when no copy has been made yet.
fn loss_outputs(report: Option<&str>) -> Vec<Value> {
    let Some(entries) = report.and_then(|r| serde_json::from_str::<Vec<Value>>(r).ok()) else {
        return Vec::new();
    };
    let (assumptions, losses): (Vec<&Value>, Vec<&Value>) = entries
        .iter()
        .partition(|l| l.get("kind").and_then(Value::as_str) == Some("assumption"));
    let mut out = vec![json!({
        "type": {"coding": [{"system": TASK_OUTPUT, "code": "loss-count", "display": "Elements not carried in the recipient's profile"}]},
        "valueInteger": losses.len(),
    })];
    let line = |l: &Value| {
        let path = l.get("path").and_then(Value::as_str).unwrap_or("-");
        let reason = l.get("reason").and_then(Value::as_str).unwrap_or("-");
        let code = l
            .get("code")
            .and_then(Value::as_str)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        format!("{path}: {reason}{code}")
    };
    for l in &losses {
        out.push(json!({
            "type": {"coding": [{"system": TASK_OUTPUT, "code": "loss", "display": "Not carried in the recipient's profile"}]},
            "valueString": line(l),
        }));
    }
    for l in &assumptions {
        out.push(json!({
            "type": {"coding": [{"system": TASK_OUTPUT, "code": "assumption", "display": "Derived or marked absent by a documented mapping rule"}]},
            "valueString": line(l),
        }));
    }
    out
}

/// The administrative failures of the delivery's copy against its profiles as `Task.output`: a
/// count, then one entry per failure (`expression: diagnostics`). The copy went (or goes) with
/// them: they are warnings, never a reason to hold it (issue 12 item 3).
fn warning_outputs(warnings: Option<&str>) -> Vec<Value> {
    let Some(list) = warnings.and_then(|w| serde_json::from_str::<Vec<Value>>(w).ok()) else {
        return Vec::new();
    };
    if list.is_empty() {
        return Vec::new();
    }
    let mut out = vec![json!({
        "type": {"coding": [{"system": TASK_OUTPUT, "code": "administrative-warning-count", "display": "Administrative elements of the copy that do not conform to the recipient's profiles"}]},
        "valueInteger": list.len(),
    })];
    for w in &list {
        let at = w.get("expression").and_then(Value::as_str).unwrap_or("-");
        let what = w.get("diagnostics").and_then(Value::as_str).unwrap_or("-");
        out.push(json!({
            "type": {"coding": [{"system": TASK_OUTPUT, "code": "administrative-warning", "display": "Sent with an administrative element that does not conform"}]},
            "valueString": format!("{at}: {what} ({})", crate::codes::DELIVERY_ADMINISTRATIVE),
        }));
    }
    out
}

pub fn render(d: &DeliveryRecord, public_url: &str) -> Value {
    let mut task = json!({
        "resourceType": "Task",
        "id": d.id,
        "meta": {"lastUpdated": d.updated_at},
        "identifier": [{"system": "https://throughcare.example.org/fhir/Id/delivery", "value": d.id}],
        "status": d.status.as_str(),
        "businessStatus": {"coding": [{"system": BUSINESS_STATUS, "code": d.business_status.as_str()}]},
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
        if let Some(code) = &d.reason_code {
            task["statusReason"]["coding"] =
                json!([{"system": crate::error::codes::SYSTEM, "code": code}]);
        }
    }
    let mut outputs = loss_outputs(d.loss_report.as_deref());
    outputs.extend(warning_outputs(d.warnings.as_deref()));
    if !outputs.is_empty() {
        task["output"] = Value::Array(outputs);
    }
    if let Some(release) = &d.release_date {
        task["restriction"] = json!({"period": {"end": release}});
    }
    let mut notes = Vec::new();
    if let Some(state) = &d.alert_state {
        let critical = if d.continuity_critical {
            "; the copy carries a medicine that must not be interrupted"
        } else {
            ""
        };
        notes.push(json!({
            "time": d.alerted_at,
            "text": format!(
                "AT RISK ({state}): the sending prison was alerted{}{critical}",
                d.release_date
                    .as_deref()
                    .map(|r| format!(" before the release date {r}"))
                    .unwrap_or_default()
            ),
        }));
    } else if d.at_risk {
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

/// Tasks visible to `principal` (as sender or recipient) that match `filter`, rendered.
pub async fn search(
    app: &crate::app::App,
    principal: &crate::auth::Principal,
    mut filter: crate::store::DeliveryFilter,
) -> Result<Vec<Value>, crate::store::StoreError> {
    filter.party_ods = Some(principal.ods.to_string());
    Ok(app
        .store
        .deliveries(&filter)
        .await?
        .iter()
        .map(|d| render(d, &app.public_url))
        .collect())
}

/// One Task, when `principal` sent the document or is the recipient.
pub async fn read(
    app: &crate::app::App,
    principal: &crate::auth::Principal,
    id: &str,
) -> Result<Option<Value>, crate::store::StoreError> {
    let ods = principal.ods.as_str();
    Ok(app
        .store
        .delivery(id)
        .await?
        .filter(|d| d.sender_ods == ods || d.recipient_ods == ods)
        .map(|d| render(&d, &app.public_url)))
}
