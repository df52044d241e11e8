//! Delivery workers: claim due deliveries, make the recipient's copy at the moment of sending
//! (`recipient::copy_for`: policy now, translation, validation against the endpoint's profile),
//! hand it to the endpoint's transport, and record the typed outcome (retry, complete, fail,
//! dead letter, hold) with the copy's loss report and administrative warnings. A copy whose
//! verdict is held (clinical content, a safety element) is not sent: the delivery waits
//! on-hold until a correcting document or an operator releases it. Also flags deliveries at
//! risk of missing the release date.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::clock::rfc3339;
use crate::domain::{BusinessStatus, Moment, OdsCode, Role, TaskStatus};
use crate::error::codes;
use crate::policy::{Purpose, Relationship};
use crate::recipient::{CopyRequest, Subject, copy_for, gateway_actor};
use crate::routing::Route;
use crate::store::{DeliveryRecord, DeliveryUpdate, StoreError};
use crate::transport::endpoint::{Endpoint, EndpointKind};
use crate::transport::retry::{Backoff, unit_random};
use crate::transport::{DeliveryOutcome, PreparedCopy, SendContext};

/// Runs until the task is aborted.
pub async fn run(state: Arc<App>) {
    let settings = state.settings.delivery.clone();
    let poll = Duration::from_millis(settings.poll_interval_ms.max(10));
    loop {
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "Delivery round failed.");
        }
        tokio::select! {
            _ = state.delivery_wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: flag deadlines and raise escalations, then claim and push what is due.
pub async fn tick(state: &App) -> Result<usize, StoreError> {
    flag_at_risk(state).await?;
    super::escalation::escalate(state).await?;
    let settings = &state.settings.delivery;
    let now = state.clock.now();
    let lease = now + time::Duration::seconds(i64::try_from(settings.lease_secs).unwrap_or(120));
    let due = state
        .store
        .claim_due(
            &rfc3339(now),
            &rfc3339(lease),
            i64::try_from(settings.concurrency.max(1)).unwrap_or(4),
        )
        .await?;
    let n = due.len();
    let ids: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
    let pushes = futures_util::future::join_all(due.into_iter().map(|d| deliver(state, d)));
    // While the attempts are in flight their leases are renewed, every third of a lease: a
    // short lease then covers a long push, and expires soon after a worker that died.
    let lease_secs = settings.lease_secs.max(1);
    let renew = async {
        let mut every = tokio::time::interval(Duration::from_millis(lease_secs * 1000 / 3));
        every.tick().await;
        loop {
            every.tick().await;
            let until = state.clock.now()
                + time::Duration::seconds(i64::try_from(lease_secs).unwrap_or(15));
            if let Err(e) = state.store.renew_claims(&ids, &rfc3339(until)).await {
                tracing::warn!(error = %e, "Could not renew delivery leases.");
            }
        }
    };
    tokio::select! {
        _ = pushes => {}
        _ = renew => {}
    }
    Ok(n)
}

async fn flag_at_risk(state: &App) -> Result<(), StoreError> {
    let now = state.clock.now();
    let margin = time::Duration::hours(state.settings.delivery.at_risk_margin_hours);
    // At risk when the release date is closer than the margin: release_date < now + margin.
    let cutoff = rfc3339(now + margin);
    let flagged = state.store.mark_at_risk(&cutoff, &rfc3339(now)).await?;
    if !flagged.is_empty() {
        let events = flagged
            .iter()
            .map(|d| {
                tracing::warn!(delivery = %d.id, "Delivery at risk of missing the release date.");
                change(
                    d,
                    "delivery-at-risk",
                    None,
                    Some("not delivered within the margin before release".into()),
                    false,
                )
                .into_draft()
            })
            .collect();
        state.store.append_audit(events).await?;
    }
    Ok(())
}

fn change(
    d: &DeliveryRecord,
    what: &'static str,
    status_code: Option<i64>,
    reason: Option<String>,
    success: bool,
) -> AuditEvent {
    AuditEvent::DeliveryChanged {
        actor: None,
        what,
        delivery_id: d.id.clone(),
        document_id: d.document_id.clone(),
        nhs_number: d.nhs_number.clone(),
        recipient: d.recipient_ods.clone(),
        attempt: d.attempts,
        status_code,
        reason,
        success,
    }
}

/// What an attempt came to, before it is recorded.
#[derive(Debug)]
enum Attempt {
    /// How it ended: as the transport said, or a failure before any transport was involved
    /// (a store error is retried; a copy that cannot be made is permanent).
    Ended(DeliveryOutcome),
    /// The recipient has no push endpoint (any more): the copy waits for its pull.
    NoEndpoint,
    /// Policy now withholds everything from the recipient.
    NothingToShare(String),
    /// The copy must not go as it stands (its verdict is held).
    Held { code: &'static str, reason: String },
}

impl Attempt {
    fn label(&self) -> &'static str {
        match self {
            Attempt::Ended(o) => o.label(),
            Attempt::NoEndpoint => "no-endpoint",
            Attempt::NothingToShare(_) => "nothing-to-share",
            Attempt::Held { .. } => "held",
        }
    }
}

/// A store error while attempting: it may pass, so the delivery is retried.
fn transient(what: &str, e: impl std::fmt::Display) -> Attempt {
    Attempt::Ended(DeliveryOutcome::RetryAfter {
        reason: format!("{what}: {e}"),
        status_code: None,
        after: None,
    })
}

fn permanent(code: &'static str, reason: String) -> Attempt {
    Attempt::Ended(DeliveryOutcome::Permanent {
        code,
        reason,
        status_code: None,
    })
}

async fn deliver(state: &App, d: DeliveryRecord) {
    let started = std::time::Instant::now();
    let (attempt, reports) = attempt(state, &d).await;
    state
        .metrics
        .count_attempt(attempt.label(), started.elapsed().as_secs_f64());
    if let Err(e) = record(state, &d, attempt, reports).await {
        // The lease expires and another round retries: nothing is lost.
        tracing::error!(delivery = %d.id, error = %e, "Could not record a delivery attempt.");
    }
}

/// The recipient as the delivery row recorded it at intake.
fn recipient_of(d: &DeliveryRecord) -> Result<Route, String> {
    Ok(Route {
        ods: OdsCode::parse(&d.recipient_ods)?,
        role: d.recipient_role.parse::<Role>()?,
        relationships: serde_json::from_str::<std::collections::BTreeSet<Relationship>>(
            &d.relationships,
        )
        .map_err(|e| e.to_string())?,
        needs_gp_registration: d.needs_gp_registration,
    })
}

/// What is kept with the delivery about the copy an attempt made (JSON), when one was made.
#[derive(Debug, Default)]
struct Reports {
    loss_report: Option<String>,
    warnings: Option<String>,
}

/// Makes the recipient's copy now and hands it to the endpoint's transport. Returns what came
/// of it and the copy's loss report and administrative warnings, when a copy was made.
async fn attempt(state: &App, d: &DeliveryRecord) -> (Attempt, Reports) {
    let none = Reports::default;
    let record = match state.store.endpoint(&d.recipient_ods).await {
        Ok(Some(r)) => r,
        Ok(None) => return (Attempt::NoEndpoint, none()),
        Err(e) => return (transient("reading the endpoint", e), none()),
    };
    let endpoint = match Endpoint::from_record(&record) {
        Ok(e) => e,
        Err(e) => return (permanent(codes::DELIVERY_ENDPOINT, e), none()),
    };
    let stored = match state.store.document(&d.document_id).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return (
                permanent(codes::DELIVERY_DOCUMENT, "the document is missing".into()),
                none(),
            );
        }
        Err(e) => return (transient("reading the document", e), none()),
    };
    // Policy now: consent or agreements may have changed since intake.
    let subject = match Subject::stored(state, &stored).await {
        Ok(s) => s,
        Err(e) if e.is_transient() => return (transient("reading consents", e), none()),
        Err(e) => return (permanent(codes::DELIVERY_DOCUMENT, e.to_string()), none()),
    };
    let recipient = match recipient_of(d) {
        Ok(r) => r,
        Err(e) => return (permanent(codes::DELIVERY_DOCUMENT, e), none()),
    };
    let made = copy_for(
        state,
        &subject,
        &recipient,
        &CopyRequest {
            purpose: Purpose::Treat,
            moment: Moment::Delivery,
            target: endpoint.profile,
            break_glass_allowed: false,
            actor: gateway_actor(),
        },
    );
    let reports = Reports {
        loss_report: made.copy.is_some().then(|| made.loss_report().to_string()),
        warnings: made
            .copy
            .is_some()
            .then(|| super::warnings_json(made.verdict.warnings())),
    };
    // The decision is recorded before anything leaves.
    if let Err(e) = state.store.append_audit(vec![made.audit.clone()]).await {
        return (transient("recording the decision", e), reports);
    }
    if !made.shares_anything() {
        let why = made
            .decision
            .refusal
            .clone()
            .unwrap_or_else(|| "policy withholds everything".into());
        return (Attempt::NothingToShare(why), none());
    }
    // A copy that fails in clinical content, or carries a medicine without its safety
    // elements, is held (never sent with a guessed dose); one that fails only in administrative
    // elements goes, its failures travelling as warnings (issue 12 item 3).
    if let Some(code) = made.verdict.hold_code() {
        let reason = super::held_reason(&made);
        return (Attempt::Held { code, reason }, reports);
    }
    if let Some(e) = &made.translation_error {
        return (
            permanent(
                codes::DELIVERY_TRANSLATION,
                format!("translation failed: {e}"),
            ),
            reports,
        );
    }
    let Some(copy) = &made.copy else {
        return (
            permanent(codes::DELIVERY_TRANSLATION, "no copy was made".into()),
            reports,
        );
    };
    // MESH: the copy goes as an ITK3 message (FHIR STU3 XML) whose ids are kept for every
    // resend; REST: the copy itself.
    let (body, to_mailbox) = match endpoint.kind {
        EndpointKind::Mesh => match super::mesh::prepare(state, d, &endpoint, copy).await {
            Ok((body, mailbox)) => (body, Some(mailbox)),
            Err(outcome) => return (Attempt::Ended(outcome), reports),
        },
        EndpointKind::FhirRest => (copy.to_string().into_bytes(), None),
    };
    let prepared = PreparedCopy {
        delivery_id: &d.id,
        document_id: &d.document_id,
        target: made.target,
        body,
        to_mailbox: to_mailbox.as_deref(),
    };
    let outcome = state
        .transports
        .for_kind(endpoint.kind)
        .send(
            &SendContext {
                clock: &state.clock,
                gateway_key: &state.tokens.gateway_key,
            },
            &endpoint,
            &prepared,
        )
        .await;
    if let (EndpointKind::Mesh, DeliveryOutcome::AwaitingAcknowledgement { reference }) =
        (endpoint.kind, &outcome)
        && let Err(e) = super::mesh::sent(state, d, reference).await
    {
        // The acknowledgements still match the message by its ids; only the due times of
        // this send are missing, so escalation falls back on the release lead time.
        tracing::error!(delivery = %d.id, error = %e, "Could not record a MESH send.");
    }
    (Attempt::Ended(outcome), reports)
}

async fn record(
    state: &App,
    d: &DeliveryRecord,
    attempt: Attempt,
    reports: Reports,
) -> Result<(), StoreError> {
    let settings = &state.settings.delivery;
    let now = state.clock.now();
    let stamp = rfc3339(now);
    let update = |status: TaskStatus,
                  business: BusinessStatus,
                  code: Option<&'static str>,
                  reason: Option<String>,
                  next: Option<String>,
                  status_code: Option<u16>| DeliveryUpdate {
        status,
        business_status: business,
        reason_code: code.map(str::to_string),
        reason,
        next_attempt_at: next,
        last_status_code: status_code.map(i64::from),
        loss_report: reports.loss_report.clone(),
        warnings: reports.warnings.clone(),
        updated_at: stamp.clone(),
    };
    let (u, events) = match attempt {
        Attempt::Ended(DeliveryOutcome::Delivered { status_code }) => (
            update(
                TaskStatus::Completed,
                BusinessStatus::Delivered,
                None,
                None,
                None,
                status_code,
            ),
            vec![change(
                d,
                "delivery-completed",
                status_code.map(i64::from),
                None,
                true,
            )],
        ),
        Attempt::Ended(DeliveryOutcome::AwaitingAcknowledgement { reference }) => (
            update(
                TaskStatus::InProgress,
                BusinessStatus::AwaitingAcknowledgement,
                None,
                Some(format!(
                    "sent as {reference}; waiting for the acknowledgement"
                )),
                None,
                None,
            ),
            vec![change(d, "delivery-sent", None, Some(reference), true)],
        ),
        Attempt::NoEndpoint => (
            update(
                TaskStatus::Requested,
                BusinessStatus::AwaitingPull,
                Some(codes::DELIVERY_NO_ENDPOINT),
                Some("the recipient has no push endpoint: the copy waits for its pull".into()),
                None,
                None,
            ),
            vec![change(
                d,
                "delivery-attempted",
                None,
                Some("no endpoint".into()),
                false,
            )],
        ),
        Attempt::Held { code, reason } => (
            update(
                TaskStatus::OnHold,
                BusinessStatus::Held,
                Some(code),
                Some(reason.clone()),
                None,
                None,
            ),
            vec![change(d, "delivery-held", None, Some(reason), false)],
        ),
        Attempt::NothingToShare(why) => (
            update(
                TaskStatus::Failed,
                BusinessStatus::NothingToShare,
                Some(codes::DELIVERY_NOTHING_TO_SHARE),
                Some(why.clone()),
                None,
                None,
            ),
            vec![change(d, "delivery-failed", None, Some(why), false)],
        ),
        Attempt::Ended(DeliveryOutcome::Permanent {
            code,
            reason,
            status_code,
        }) => {
            let sc = status_code.map(i64::from);
            (
                update(
                    TaskStatus::Failed,
                    BusinessStatus::PermanentError,
                    Some(code),
                    Some(reason.clone()),
                    None,
                    status_code,
                ),
                vec![
                    change(d, "delivery-attempted", sc, Some(reason.clone()), false),
                    change(d, "delivery-failed", sc, Some(reason), false),
                ],
            )
        }
        Attempt::Ended(DeliveryOutcome::RetryAfter {
            reason,
            status_code,
            after,
        }) => {
            let sc = status_code.map(i64::from);
            let created = time::OffsetDateTime::parse(
                &d.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(now);
            let too_old = now - created > time::Duration::hours(settings.max_age_hours);
            if d.attempts >= settings.max_attempts || too_old {
                let why = format!("{reason}; gave up after {} attempts", d.attempts);
                (
                    update(
                        TaskStatus::Failed,
                        BusinessStatus::DeadLetter,
                        Some(codes::DELIVERY_DEAD_LETTER),
                        Some(why.clone()),
                        None,
                        status_code,
                    ),
                    vec![
                        change(d, "delivery-attempted", sc, Some(reason), false),
                        change(d, "dead-letter", sc, Some(why), false),
                    ],
                )
            } else {
                let backoff = Backoff {
                    base: Duration::from_millis(settings.backoff_base_ms),
                    cap: Duration::from_secs(settings.backoff_cap_secs),
                };
                let wait = backoff.delay(d.attempts, after, unit_random());
                let next = now + time::Duration::try_from(wait).unwrap_or(time::Duration::ZERO);
                (
                    update(
                        TaskStatus::Requested,
                        BusinessStatus::Retrying,
                        Some(codes::DELIVERY_RETRYING),
                        Some(reason.clone()),
                        Some(rfc3339(next)),
                        status_code,
                    ),
                    vec![change(d, "delivery-attempted", sc, Some(reason), false)],
                )
            }
        }
    };
    let drafts = events.into_iter().map(AuditEvent::into_draft).collect();
    state.store.finish_delivery(&d.id, u, drafts).await
}
