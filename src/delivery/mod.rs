//! Delivery (DESIGN §9): each (document, recipient) pair is an outbox row written with the
//! document, shown as a FHIR Task, and sent by workers through the endpoint's transport with
//! retries, a dead letter, and deadlines before release. The recipient's copy is made again at
//! the moment of each attempt (`recipient::copy_for`), so a consent withdrawn in between counts.

pub mod escalation;
pub mod mesh;
pub mod task;
pub mod webhook;
pub mod worker;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::chain::AuditDraft;
use crate::clock::rfc3339;
use crate::document::DocumentSummary;
use crate::domain::{BusinessStatus, CustodyEvent, OdsCode, Role, TaskStatus};
use crate::error::codes;
use crate::recipient::RecipientCopy;
use crate::store::{NewDelivery, StoreError};
use crate::translate::Target;

use crate::transport::endpoint::Endpoint;

/// The recipient's endpoint, typed. A stored row that no longer reads is logged and treated as
/// no endpoint for planning; the worker reports it on the Task when it tries to send.
pub async fn endpoint_for(app: &App, ods: &OdsCode) -> Result<Option<Endpoint>, StoreError> {
    Ok(app
        .store
        .endpoint(ods.as_str())
        .await?
        .and_then(|r| match Endpoint::from_record(&r) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(ods = %r.ods, error = %e, "A stored endpoint is unreadable.");
                None
            }
        }))
}

/// The profile a recipient receives unless it asks for another: its endpoint's, else the
/// prison profile for a prison, else UK Core R4.
pub async fn target_for(app: &App, ods: &OdsCode, role: Role) -> Result<Target, StoreError> {
    let endpoint = endpoint_for(app, ods).await?;
    Ok(crate::recipient::default_target(
        endpoint.map(|e| e.profile),
        role,
    ))
}

/// Plans the deliveries of a newly accepted document: one per routed recipient, from the copy
/// previewed for it at intake (its loss report and administrative warnings are kept with the
/// delivery). A recipient no agreement covers gets a rejected Task with its reason; one whose
/// copy is held (clinical content, a safety element) is on-hold from the start, with the
/// reason; one with no endpoint (not in `with_endpoint`) waits for a pull. Each delivery's
/// escalation lead time is decided here: the longer lead time of the continuity-critical
/// medicines when the recipient's copy (or, when no copy was made, the document) carries one.
pub fn plan(
    app: &App,
    document_id: &str,
    summary: &DocumentSummary,
    document: &serde_json::Value,
    copies: &[RecipientCopy],
    with_endpoint: &std::collections::HashSet<OdsCode>,
) -> (Vec<NewDelivery>, Vec<AuditDraft>) {
    let now = rfc3339(app.clock.now());
    let release_date = matches!(
        summary.event,
        CustodyEvent::PreRelease | CustodyEvent::Release | CustodyEvent::CourtRelease
    )
    // Stored as the earliest UTC date the release can fall on (a partial date's first day),
    // so that escalation and at-risk flagging compare like with like.
    .then(|| {
        crate::clock::earliest_utc_date(&summary.event_date)
            .unwrap_or_else(|| summary.event_date.clone())
    });
    let mut deliveries = Vec::with_capacity(copies.len());
    let mut events = Vec::with_capacity(copies.len());
    for c in copies {
        let id = uuid::Uuid::new_v4().to_string();
        let route = &c.recipient;
        let critical = !app
            .medicines
            .in_document(c.copy.as_ref().unwrap_or(document))
            .is_empty();
        let relationships =
            serde_json::to_string(&route.relationships).unwrap_or_else(|_| "[]".into());
        let (status, business, code, reason, next, what) = if c.decision.agreement.is_none() {
            let reason = c
                .decision
                .refusal
                .clone()
                .unwrap_or_else(|| "no agreement".into());
            (
                TaskStatus::Rejected,
                BusinessStatus::NoAgreement,
                Some(codes::DELIVERY_NO_AGREEMENT),
                Some(reason),
                None,
                "delivery-rejected",
            )
        } else if c.shares_anything() && c.verdict.is_held() {
            (
                TaskStatus::OnHold,
                BusinessStatus::Held,
                c.verdict.hold_code(),
                Some(held_reason(c)),
                None,
                "delivery-held",
            )
        } else if with_endpoint.contains(&route.ods) {
            (
                TaskStatus::Requested,
                BusinessStatus::Scheduled,
                None,
                None,
                Some(now.clone()),
                "delivery-scheduled",
            )
        } else {
            (
                TaskStatus::Requested,
                BusinessStatus::AwaitingPull,
                Some(codes::DELIVERY_NO_ENDPOINT),
                Some("the recipient has no push endpoint: the copy waits for its pull".to_string()),
                None,
                "delivery-scheduled",
            )
        };
        events.push(
            AuditEvent::DeliveryChanged {
                actor: None,
                what,
                delivery_id: id.clone(),
                document_id: document_id.to_string(),
                nhs_number: summary.nhs_number.as_str().to_string(),
                recipient: route.ods.to_string(),
                attempt: 0,
                status_code: None,
                reason: reason.clone(),
                success: status != TaskStatus::Rejected,
            }
            .into_draft(),
        );
        deliveries.push(NewDelivery {
            id,
            recipient_ods: route.ods.to_string(),
            recipient_role: route.role.as_str().to_string(),
            relationships,
            needs_gp_registration: route.needs_gp_registration,
            status,
            business_status: business,
            reason_code: code.map(str::to_string),
            reason,
            next_attempt_at: next,
            release_date: release_date.clone(),
            loss_report: c.copy.is_some().then(|| c.loss_report().to_string()),
            continuity_critical: critical,
            lead_time_days: Some(i64::from(escalation::lead_time_days(app, critical))),
            warnings: c
                .copy
                .is_some()
                .then(|| warnings_json(c.verdict.warnings())),
        });
    }
    (deliveries, events)
}

/// Why a copy is held, for its Task's `statusReason`.
pub fn held_reason(c: &RecipientCopy) -> String {
    format!(
        "held, not sent (the {} copy): {}",
        c.target,
        c.verdict.hold_summary()
    )
}

/// Administrative warnings as stored with a delivery: `[{expression, diagnostics}]`.
pub fn warnings_json(warnings: &[crate::fhir::outcome::Issue]) -> String {
    serde_json::Value::Array(
        warnings
            .iter()
            .map(|w| {
                serde_json::json!({
                    "expression": w.expression,
                    "diagnostics": w.diagnostics,
                })
            })
            .collect(),
    )
    .to_string()
}
