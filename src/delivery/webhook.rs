//! The alert webhook's worker: sends the events the escalation queued in the store
//! (`alert_webhooks`), leased like deliveries so that one instance sends each, retried with the
//! delivery backoff (capped exponential, full jitter, `Retry-After` honoured) until
//! `delivery.max_attempts`, after which the event is marked failed and logged. Events survive a
//! restart: they are rows, not memory.

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::clock::rfc3339;
use crate::store::{StoreError, WebhookRecord, WebhookUpdate};
use crate::transport::retry::{Backoff, unit_random};

/// Runs until the task is aborted; returns at once when no webhook is configured.
pub async fn run(state: Arc<App>) {
    if state.transports.alert_webhook.is_none() {
        return;
    }
    let poll = Duration::from_millis(state.settings.delivery.poll_interval_ms.max(10));
    loop {
        if let Err(e) = tick(&state).await {
            tracing::error!(error = %e, "Alert webhook round failed.");
        }
        tokio::select! {
            _ = state.alert_wakeup.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// One round: claims the events due and sends them. Returns how many were attempted.
pub async fn tick(state: &App) -> Result<usize, StoreError> {
    let Some(_) = &state.transports.alert_webhook else {
        return Ok(0);
    };
    let settings = &state.settings.delivery;
    let now = state.clock.now();
    // A lease longer than two timeouts: the send is bounded by the client's timeout.
    let lease =
        now + time::Duration::seconds(i64::try_from(settings.timeout_secs * 2 + 5).unwrap_or(65));
    let due = state
        .store
        .claim_webhooks(&rfc3339(now), &rfc3339(lease), 16)
        .await?;
    let n = due.len();
    futures_util::future::join_all(due.into_iter().map(|e| send(state, e))).await;
    Ok(n)
}

async fn send(state: &App, event: WebhookRecord) {
    let Some(webhook) = &state.transports.alert_webhook else {
        return;
    };
    let settings = &state.settings.delivery;
    let result = webhook.send(&event.id, &event.body).await;
    let now = state.clock.now();
    let (outcome, update) = match result {
        Ok(_) => (
            "sent",
            WebhookUpdate {
                status: "sent".into(),
                next_attempt_at: None,
                last_error: None,
                updated_at: rfc3339(now),
            },
        ),
        Err(e) if e.is_retryable() && event.attempts < settings.max_attempts => {
            let backoff = Backoff {
                base: Duration::from_millis(settings.backoff_base_ms),
                cap: Duration::from_secs(settings.backoff_cap_secs),
            };
            let retry_after = match &e {
                crate::transport::retry::AttemptError::Status { retry_after, .. } => *retry_after,
                _ => None,
            };
            let wait = backoff.delay(event.attempts, retry_after, unit_random());
            let next = now + time::Duration::try_from(wait).unwrap_or(time::Duration::ZERO);
            tracing::warn!(event = %event.id, attempt = event.attempts, error = %e.describe(), "Alert webhook failed; retrying.");
            (
                "retrying",
                WebhookUpdate {
                    status: "pending".into(),
                    next_attempt_at: Some(rfc3339(next)),
                    last_error: Some(e.describe()),
                    updated_at: rfc3339(now),
                },
            )
        }
        Err(e) => {
            tracing::error!(event = %event.id, attempts = event.attempts, error = %e.describe(), "Alert webhook gave up: the alert stands as a Communication and in the audit log.");
            (
                "failed",
                WebhookUpdate {
                    status: "failed".into(),
                    next_attempt_at: None,
                    last_error: Some(e.describe()),
                    updated_at: rfc3339(now),
                },
            )
        }
    };
    state.metrics.count_webhook(outcome);
    if let Err(e) = state.store.finish_webhook(&event.id, update).await {
        // The lease expires and a later round sends it again (same Idempotency-Key).
        tracing::error!(event = %event.id, error = %e, "Could not record an alert webhook attempt.");
    }
}
