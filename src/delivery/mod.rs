//! Delivery (DESIGN §9): each (document, recipient) pair is an outbox row written with the
//! document, shown as a FHIR Task, and pushed by workers with retries, a dead letter, and
//! deadlines before release. Policy and translation run again at the moment of each push.

pub mod retry;
pub mod task;
pub mod worker;

use crate::audit::{AuditDraft, AuditEvent};
use crate::clock::rfc3339;
use crate::document::DocumentSummary;
use crate::domain::CustodyEvent;
use crate::sharing::RecipientVerdict;
use crate::startup::AppState;
use crate::store::{NewDelivery, StoreError};

/// Plans the deliveries of a newly accepted document: one per routed recipient. A recipient no
/// agreement covers gets a rejected Task with its reason; one with no endpoint waits for a pull.
pub async fn plan(
    state: &AppState,
    document_id: &str,
    summary: &DocumentSummary,
    verdicts: &[RecipientVerdict],
) -> Result<(Vec<NewDelivery>, Vec<AuditDraft>), StoreError> {
    let now = rfc3339(state.clock.now());
    let release_date = matches!(
        summary.event,
        CustodyEvent::PreRelease | CustodyEvent::Release | CustodyEvent::CourtRelease
    )
    .then(|| summary.event_date.clone());
    let mut deliveries = Vec::with_capacity(verdicts.len());
    let mut events = Vec::with_capacity(verdicts.len());
    for v in verdicts {
        let id = uuid::Uuid::new_v4().to_string();
        let relationships =
            serde_json::to_string(&v.route.relationships).unwrap_or_else(|_| "[]".into());
        let (status, business, reason, next, what) = if v.decision.agreement.is_none() {
            let reason = v
                .decision
                .refusal
                .clone()
                .unwrap_or_else(|| "no agreement".into());
            (
                "rejected",
                "no-agreement",
                Some(reason),
                None,
                "delivery-rejected",
            )
        } else if state.store.endpoint(v.route.ods.as_str()).await?.is_some() {
            (
                "requested",
                "scheduled",
                None,
                Some(now.clone()),
                "delivery-scheduled",
            )
        } else {
            (
                "requested",
                "awaiting-pull",
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
                recipient: v.route.ods.to_string(),
                attempt: 0,
                status_code: None,
                reason: reason.clone(),
                success: status != "rejected",
            }
            .into_draft(),
        );
        deliveries.push(NewDelivery {
            id,
            recipient_ods: v.route.ods.to_string(),
            recipient_role: v.route.role.as_str().to_string(),
            relationships,
            needs_gp_registration: v.route.needs_gp_registration,
            status: status.into(),
            business_status: business.into(),
            reason,
            next_attempt_at: next,
            release_date: release_date.clone(),
        });
    }
    Ok((deliveries, events))
}

/// The profile a recipient receives: its endpoint's, else prison for a prison, else UK Core.
pub async fn target_for(
    state: &AppState,
    ods: &crate::domain::OdsCode,
    role: crate::domain::Role,
) -> Result<crate::translate::Target, StoreError> {
    use crate::translate::Target;
    if let Some(e) = state.store.endpoint(ods.as_str()).await?
        && let Ok(t) = e.profile.parse::<Target>()
    {
        return Ok(t);
    }
    Ok(if role == crate::domain::Role::Prison {
        Target::Prison
    } else {
        Target::UkCoreR4
    })
}
