//! Escalation before release (DESIGN §9, issue 12 item 5): a delivery that is held, failed,
//! dead-lettered, or still undelivered when the release date is within its lead time raises an
//! alert, once per change of state:
//!
//! - a FHIR `Communication` to the sending prison (`GET /fhir/Communication`), about the Task,
//!   saying what happened and the release date; the Task is marked at risk;
//! - a webhook event, when `alerts.webhook_url` is set: `{event, task, state, due, raised}` and
//!   nothing about the patient (no NHS number, name or medicine), queued in the store and sent
//!   with retries ([`super::webhook`]);
//! - an audit entry (`delivery-escalated`) and the metrics `throughcare_delivery_alerts_total`
//!   and `throughcare_deliveries_escalated`.
//!
//! A hold or a failure raises its alert at once, whatever the date. The lead time is decided at
//! intake ([`lead_time_days`]): 3 days by default (`alerts.lead_time_days`), 7 when the copy
//! carries a continuity-critical medicine (`mappings/medicines/`). The store decides which
//! instance raises an alert (the state last alerted changes only from the value read), so
//! several instances sharing one store raise each alert once.

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::clock::rfc3339;
use crate::domain::systems;
use crate::store::{
    AlertChange, CommunicationFilter, DeliveryRecord, NewCommunication, NewWebhookEvent, StoreError,
};

/// The code system of the alert categories (the escalation states).
pub const ALERT_SYSTEM: &str = "https://throughcare.example.org/fhir/CodeSystem/alert";

/// The escalation states, as stored, shown and labelled in metrics.
pub const STATES: &[(&str, &str)] = &[
    ("held", "Delivery held"),
    ("failed", "Delivery failed"),
    ("dead-letter", "Delivery in the dead letter"),
    (
        "undelivered-near-release",
        "Not delivered within the lead time before release",
    ),
    (
        "unacknowledged",
        "No ITK3 acknowledgement from the practice in time",
    ),
    (
        "recently-deceased",
        "The practice reports the patient recently deceased",
    ),
];

/// The webhook event's name.
pub const WEBHOOK_EVENT: &str = "delivery-at-risk";

/// The lead time of a new delivery: the configured default, or the continuity-critical
/// medicines' when the copy carries one (whichever is longer).
pub fn lead_time_days(app: &App, continuity_critical: bool) -> u32 {
    let default = app.settings.alerts.lead_time_days;
    if continuity_critical {
        default.max(app.medicines.lead_time_days)
    } else {
        default
    }
}

fn display(state: &str) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, d)| *d)
        .unwrap_or("Delivery at risk")
}

/// One round: raises the alerts of deliveries whose escalation state changed, and closes the
/// escalations that are over. Returns the number of alerts raised.
pub async fn escalate(app: &App) -> Result<usize, StoreError> {
    let now = app.clock.now();
    let stamp = rfc3339(now);
    let default_lead = i64::from(app.settings.alerts.lead_time_days);
    let found = app.store.escalations(&stamp, default_lead).await?;
    if found.is_empty() {
        return Ok(0);
    }
    let webhook = app.settings.alerts.webhook_url.is_some();
    let changes: Vec<AlertChange> = found
        .into_iter()
        .map(|(d, state)| change(app, &d, state, &stamp, default_lead, webhook))
        .collect();
    let written = app.store.change_alerts(changes, &stamp).await?;
    let mut raised = 0;
    for c in &written {
        if let Some(state) = &c.to {
            raised += 1;
            app.metrics.count_alert(state);
            tracing::warn!(delivery = %c.delivery_id, state = %state, "Delivery escalated: the sending prison was alerted.");
        }
    }
    if raised > 0 && webhook {
        app.alert_wakeup.notify_one();
    }
    Ok(raised)
}

fn change(
    app: &App,
    d: &DeliveryRecord,
    state: Option<String>,
    now: &str,
    default_lead: i64,
    webhook: bool,
) -> AlertChange {
    let Some(to) = state else {
        return AlertChange {
            delivery_id: d.id.clone(),
            from: d.alert_state.clone(),
            to: None,
            communication: None,
            webhook: None,
            audit: Vec::new(),
        };
    };
    let lead = d.lead_time_days.unwrap_or(default_lead);
    let communication_id = uuid::Uuid::new_v4().to_string();
    let body = communication(app, d, &to, &communication_id, now, lead);
    let event = webhook.then(|| NewWebhookEvent {
        id: uuid::Uuid::new_v4().to_string(),
        body: webhook_body(d, &to, now).to_string(),
    });
    let audit = AuditEvent::DeliveryEscalated {
        delivery_id: d.id.clone(),
        document_id: d.document_id.clone(),
        nhs_number: d.nhs_number.clone(),
        sender: d.sender_ods.clone(),
        recipient: d.recipient_ods.clone(),
        state: to.clone(),
        due: d.release_date.clone(),
        lead_time_days: lead,
        continuity_critical: d.continuity_critical,
        communication_id: communication_id.clone(),
        webhook,
    }
    .into_draft();
    AlertChange {
        delivery_id: d.id.clone(),
        from: d.alert_state.clone(),
        to: Some(to.clone()),
        communication: Some(NewCommunication {
            id: communication_id,
            sender_ods: d.sender_ods.clone(),
            state: to,
            sent: now.to_string(),
            body: body.to_string(),
        }),
        webhook: event,
        audit: vec![audit],
    }
}

/// The webhook event: the Task id, the state, the release date and when it was raised. Nothing
/// about the patient: no NHS number, no name, no medicine, no recipient's error text.
pub fn webhook_body(d: &DeliveryRecord, state: &str, raised: &str) -> Value {
    json!({
        "event": WEBHOOK_EVENT,
        "task": d.id,
        "state": state,
        "due": d.release_date,
        "raised": raised,
    })
}

/// What happened, in words for the sending prison's staff.
fn what_happened(d: &DeliveryRecord, state: &str, lead: i64) -> String {
    let to = format!("{} ({})", d.recipient_ods, d.recipient_role);
    let why = d
        .reason
        .as_deref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    let code = d
        .reason_code
        .as_deref()
        .map(|c| format!(" [{c}]"))
        .unwrap_or_default();
    let happened = match state {
        "held" => format!("The copy for {to} is held and has not been sent{why}{code}."),
        "failed" => format!("The delivery to {to} failed{why}{code}."),
        "dead-letter" => format!(
            "The delivery to {to} gave up after {} attempts and is in the dead letter{why}{code}.",
            d.attempts
        ),
        "unacknowledged" => format!(
            "The ITK3 message to {to} was sent over MESH and the practice system has not acknowledged it in time{why}{code}."
        ),
        "recently-deceased" => format!(
            "The practice {to} received the document and reports the patient as recently deceased (ITK 30004): please check the identity and the release records."
        ),
        _ => format!(
            "The copy for {to} has not been delivered ({}){why}{code}.",
            d.business_status
        ),
    };
    let due = match &d.release_date {
        Some(date) => format!("The release date is {date}"),
        None => "No release date is recorded".to_string(),
    };
    let critical = if d.continuity_critical {
        " The copy carries a medicine that must not be interrupted at release."
    } else {
        ""
    };
    format!(
        "{happened} {due}; deliveries still undelivered are escalated {lead} days before it.{critical} \
         Arrange the handover another way if it cannot be mended before release (Task/{}).",
        d.id
    )
}

/// The Communication to the sending prison about the delivery's Task.
fn communication(
    app: &App,
    d: &DeliveryRecord,
    state: &str,
    id: &str,
    now: &str,
    lead: i64,
) -> Value {
    json!({
        "resourceType": "Communication",
        "id": id,
        "meta": {"lastUpdated": now},
        "status": "completed",
        "category": [{"coding": [{"system": ALERT_SYSTEM, "code": state, "display": display(state)}]}],
        "priority": "urgent",
        "subject": {"identifier": {"system": systems::NHS_NUMBER, "value": d.nhs_number}},
        "about": [{"reference": format!("{}/fhir/Task/{}", app.public_url, d.id)}],
        "recipient": [{"identifier": {"system": systems::ODS_ORGANISATION, "value": d.sender_ods}}],
        "sent": now,
        "payload": [{"contentString": what_happened(d, state, lead)}],
    })
}

/// The Communications sent to the caller's organisation (a prison sees only its own).
pub async fn communications(
    app: &App,
    principal: &Principal,
    mut filter: CommunicationFilter,
) -> Result<Vec<Value>, StoreError> {
    filter.sender_ods = Some(principal.ods.to_string());
    Ok(app
        .store
        .communications(&filter)
        .await?
        .into_iter()
        .filter_map(|c| serde_json::from_str(&c.body).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BusinessStatus, TaskStatus};

    fn delivery() -> DeliveryRecord {
        DeliveryRecord {
            id: "t-1".into(),
            document_id: "d-1".into(),
            nhs_number: "9990000018".into(),
            sender_ods: "Y02307".into(),
            recipient_ods: "A99001".into(),
            recipient_role: "gp".into(),
            relationships: "[]".into(),
            needs_gp_registration: false,
            status: TaskStatus::Failed,
            business_status: BusinessStatus::PermanentError,
            reason_code: Some("GW-DELIVERY-06".into()),
            reason: Some("the recipient refused the copy (422)".into()),
            attempts: 1,
            next_attempt_at: None,
            claimed_until: None,
            release_date: Some("2026-12-04".into()),
            at_risk: false,
            last_status_code: Some(422),
            loss_report: None,
            warnings: None,
            continuity_critical: true,
            lead_time_days: Some(7),
            alert_state: None,
            alerted_at: None,
            created_at: "2026-11-20T10:00:00.000Z".into(),
            updated_at: "2026-11-20T10:00:00.000Z".into(),
        }
    }

    #[test]
    fn the_states_are_those_the_metrics_label() {
        let ours: Vec<&str> = STATES.iter().map(|(s, _)| *s).collect();
        assert_eq!(ours, crate::metrics::ALERT_STATES);
    }

    #[test]
    fn the_webhook_event_carries_the_task_state_and_dates_and_nothing_about_the_patient() {
        let d = delivery();
        let body = webhook_body(&d, "failed", "2026-11-21T10:00:00.000Z");
        let keys: Vec<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["event", "task", "state", "due", "raised"]);
        assert_eq!(body["due"], "2026-12-04");
        let text = body.to_string();
        for secret in ["9990000018", "A99001", "refused", "Y02307"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    #[test]
    fn the_alert_text_says_what_happened_and_the_release_date() {
        let text = what_happened(&delivery(), "failed", 7);
        assert!(
            text.contains("The delivery to A99001 (gp) failed"),
            "{text}"
        );
        assert!(text.contains("2026-12-04"), "{text}");
        assert!(text.contains("7 days"), "{text}");
        assert!(text.contains("must not be interrupted"), "{text}");
        assert!(text.contains("GW-DELIVERY-06"), "{text}");
    }
}
