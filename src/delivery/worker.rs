//! Delivery workers: claim due deliveries, apply policy at the moment of sending, push the
//! recipient's copy with a stable idempotency key, and record the outcome (retry, complete,
//! fail, dead letter). Also flags deliveries at risk of missing the release date.

use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use serde_json::Value;

use super::retry::{AttemptError, Backoff, parse_retry_after, unit_random};
use crate::audit::{Actor, AuditEvent};
use crate::clock::rfc3339;
use crate::config::DeliverySettings;
use crate::domain::{OdsCode, Role};
use crate::policy::{Party, Purpose, RecipientContext, Relationship};
use crate::startup::AppState;
use crate::store::{DeliveryRecord, DeliveryUpdate, EndpointRecord};

/// Builds the HTTP client for pushes: timeouts always, the gateway's certificate for mutual TLS
/// and extra CAs when configured.
pub fn push_client(settings: &DeliverySettings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_secs))
        .connect_timeout(Duration::from_secs(settings.timeout_secs.min(10)))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &settings.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&settings.client_cert, &settings.client_key) {
        let mut identity =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        identity.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
        builder = builder.identity(reqwest::Identity::from_pem(&identity)?);
    }
    builder.build().context("building the push client")
}

/// Runs until the task is aborted.
pub async fn run(state: web::Data<AppState>) {
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

/// One round: flag deadlines, then claim and push what is due.
pub async fn tick(state: &AppState) -> anyhow::Result<usize> {
    flag_at_risk(state).await?;
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
    let pushes = due.into_iter().map(|d| deliver(state, d));
    futures_util::future::join_all(pushes).await;
    Ok(n)
}

async fn flag_at_risk(state: &AppState) -> anyhow::Result<()> {
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

/// What an attempt produced, before it is recorded.
enum Outcome {
    Delivered(u16),
    NoEndpoint,
    NothingToShare(String),
    Failed(AttemptError),
}

async fn deliver(state: &AppState, d: DeliveryRecord) {
    let started = std::time::Instant::now();
    let outcome = match attempt(state, &d).await {
        Ok(o) => o,
        Err(e) => Outcome::Failed(AttemptError::Permanent(format!("{e:#}"))),
    };
    let label = match &outcome {
        Outcome::Delivered(_) => "delivered".to_string(),
        Outcome::NoEndpoint => "no-endpoint".to_string(),
        Outcome::NothingToShare(_) => "nothing-to-share".to_string(),
        Outcome::Failed(e) if e.is_retryable() => "retryable-error".to_string(),
        Outcome::Failed(_) => "permanent-error".to_string(),
    };
    state
        .metrics
        .count_attempt(&label, started.elapsed().as_secs_f64());
    if let Err(e) = record(state, &d, outcome).await {
        // The lease expires and another round retries: nothing is lost.
        tracing::error!(delivery = %d.id, error = %e, "Could not record a delivery attempt.");
    }
}

async fn attempt(state: &AppState, d: &DeliveryRecord) -> anyhow::Result<Outcome> {
    let Some(endpoint) = state.store.endpoint(&d.recipient_ods).await? else {
        return Ok(Outcome::NoEndpoint);
    };
    let Some(stored) = state.store.document(&d.document_id).await? else {
        anyhow::bail!("the document is missing");
    };
    let document: Value = serde_json::from_slice(&stored.body)?;
    // Policy now: consent or agreements may have changed since intake.
    let relationships: std::collections::BTreeSet<Relationship> =
        serde_json::from_str(&d.relationships).unwrap_or_default();
    let recipient = RecipientContext {
        ods: OdsCode::parse(&d.recipient_ods).map_err(|e| anyhow::anyhow!(e))?,
        role: d
            .recipient_role
            .parse::<Role>()
            .map_err(|e| anyhow::anyhow!(e))?,
        relationships,
    };
    let sender = Party {
        ods: OdsCode::parse(&d.sender_ods).map_err(|e| anyhow::anyhow!(e))?,
        role: Role::Prison,
    };
    let consents = state
        .sharing
        .consents(state.store.as_ref(), &d.nhs_number)
        .await?;
    let decision = state.sharing.decide(
        &document,
        &sender,
        &recipient,
        Purpose::Treat,
        &consents,
        false,
        false,
        state.clock.now(),
    );
    let gateway = Actor {
        client_id: "throughcare".into(),
        ods: String::new(),
    };
    let disclosure = crate::sharing::decided_event(
        gateway,
        &d.nhs_number,
        &recipient.ods,
        recipient.role,
        Purpose::Treat,
        &decision,
        "delivery",
        Some(&d.document_id),
    );
    if decision.agreement.is_none() || decision.shared().next().is_none() {
        state
            .store
            .append_audit(vec![disclosure.into_draft()])
            .await?;
        let why = decision
            .refusal
            .clone()
            .unwrap_or_else(|| "policy withholds everything".into());
        return Ok(Outcome::NothingToShare(why));
    }
    let (copy, _) = crate::policy::apply(&document, &decision);
    // Translate the recipient's copy to the profile its endpoint speaks.
    let target = endpoint
        .profile
        .parse::<crate::translate::Target>()
        .map_err(|_| anyhow::anyhow!("endpoint profile {:?} is unknown", endpoint.profile))?;
    let body = match state.translator.translate_owned(
        crate::translate::Source::Prison,
        target,
        copy,
    ) {
        Ok(t) => {
            // The recipient's copy must conform to the profiles its endpoint speaks: a copy
            // that does not is a mapping defect, and retrying will not mend it.
            let errors: Vec<_> = state
                .validator
                .validate(&t.output, None, target.profile_set())
                .into_iter()
                .filter(|i| i.severity == crate::fhir::outcome::Severity::Error)
                .collect();
            if let Some(first) = errors.first() {
                return Ok(Outcome::Failed(AttemptError::Permanent(format!(
                    "the {target} copy does not conform to its profiles, so it was not sent ({} error(s); first at {}: {})",
                    errors.len(),
                    first.expression.as_deref().unwrap_or("-"),
                    first.diagnostics
                ))));
            }
            t.output.to_string()
        }
        Err(e) => {
            return Ok(Outcome::Failed(AttemptError::Permanent(format!(
                "translation failed: {e}"
            ))));
        }
    };
    state
        .store
        .append_audit(vec![disclosure.into_draft()])
        .await?;
    Ok(match push(state, &endpoint, d, body).await {
        Ok(code) => Outcome::Delivered(code),
        Err(e) => Outcome::Failed(e),
    })
}

fn check_url(state: &AppState, url: &str) -> Result<reqwest::Url, AttemptError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| AttemptError::Permanent(format!("bad endpoint URL: {e}")))?;
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback && state.settings.delivery.allow_loopback_http => Ok(parsed),
        _ => Err(AttemptError::Permanent("endpoints must use https".into())),
    }
}

async fn push(
    state: &AppState,
    endpoint: &EndpointRecord,
    d: &DeliveryRecord,
    body: String,
) -> Result<u16, AttemptError> {
    let url = check_url(state, &endpoint.url)?;
    let mut request = state
        .push_client
        .post(url)
        .header("Content-Type", "application/fhir+json")
        .header("Idempotency-Key", d.id.as_str())
        .header("X-Request-ID", uuid::Uuid::new_v4().to_string())
        .header("X-Correlation-ID", d.document_id.as_str())
        .body(body);
    let auth: Value = serde_json::from_str(&endpoint.auth).unwrap_or(Value::Null);
    if let Some(token) = auth.get("bearer_token").and_then(Value::as_str) {
        request = request.bearer_auth(token);
    } else if let Some(token_url) = auth.get("token_url").and_then(Value::as_str) {
        let client_id = auth
            .get("client_id")
            .and_then(Value::as_str)
            .unwrap_or("throughcare");
        let token = fetch_token(state, token_url, client_id).await?;
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let code = response.status().as_u16();
            if response.status().is_success() {
                Ok(code)
            } else {
                let retry_after = response
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, state.clock.now()));
                Err(AttemptError::Status { code, retry_after })
            }
        }
        Err(e) if e.is_timeout() => Err(AttemptError::Timeout),
        Err(e) if e.is_connect() || e.is_request() => Err(AttemptError::Connect(e.to_string())),
        Err(e) => Err(AttemptError::Connect(e.to_string())),
    }
}

async fn record(state: &AppState, d: &DeliveryRecord, outcome: Outcome) -> anyhow::Result<()> {
    let settings = &state.settings.delivery;
    let now = state.clock.now();
    let stamp = rfc3339(now);
    let update = |status: &str,
                  business: &str,
                  reason: Option<String>,
                  next: Option<String>,
                  code: Option<i64>| {
        DeliveryUpdate {
            status: status.into(),
            business_status: business.into(),
            reason,
            next_attempt_at: next,
            last_status_code: code,
            updated_at: stamp.clone(),
        }
    };
    let (u, events) = match outcome {
        Outcome::Delivered(code) => (
            update("completed", "delivered", None, None, Some(i64::from(code))),
            vec![change(
                d,
                "delivery-completed",
                Some(i64::from(code)),
                None,
                true,
            )],
        ),
        Outcome::NoEndpoint => (
            update(
                "requested",
                "awaiting-pull",
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
        Outcome::NothingToShare(why) => (
            update("failed", "nothing-to-share", Some(why.clone()), None, None),
            vec![change(d, "delivery-failed", None, Some(why), false)],
        ),
        Outcome::Failed(err) => {
            let code = err.status_code().map(i64::from);
            let reason = err.describe();
            let created = time::OffsetDateTime::parse(
                &d.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap_or(now);
            let too_old = now - created > time::Duration::hours(settings.max_age_hours);
            if !err.is_retryable() {
                (
                    update(
                        "failed",
                        "permanent-error",
                        Some(reason.clone()),
                        None,
                        code,
                    ),
                    vec![
                        change(d, "delivery-attempted", code, Some(reason.clone()), false),
                        change(d, "delivery-failed", code, Some(reason), false),
                    ],
                )
            } else if d.attempts >= settings.max_attempts || too_old {
                let why = format!("{reason}; gave up after {} attempts", d.attempts);
                (
                    update("failed", "dead-letter", Some(why.clone()), None, code),
                    vec![
                        change(d, "delivery-attempted", code, Some(reason), false),
                        change(d, "dead-letter", code, Some(why), false),
                    ],
                )
            } else {
                let backoff = Backoff {
                    base: Duration::from_millis(settings.backoff_base_ms),
                    cap: Duration::from_secs(settings.backoff_cap_secs),
                };
                let retry_after = match &err {
                    AttemptError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let wait = backoff.delay(d.attempts, retry_after, unit_random());
                let next = now + time::Duration::try_from(wait).unwrap_or(time::Duration::ZERO);
                (
                    update(
                        "requested",
                        "retrying",
                        Some(reason.clone()),
                        Some(rfc3339(next)),
                        code,
                    ),
                    vec![change(d, "delivery-attempted", code, Some(reason), false)],
                )
            }
        }
    };
    let drafts = events.into_iter().map(AuditEvent::into_draft).collect();
    state.store.finish_delivery(&d.id, u, drafts).await?;
    Ok(())
}

/// Gets an access token from a recipient's token URL (SMART Backend Services, the gateway as the
/// client: a client assertion signed with the gateway's own key), cached until shortly before it
/// expires.
async fn fetch_token(
    state: &AppState,
    token_url: &str,
    client_id: &str,
) -> Result<String, AttemptError> {
    let key = format!("{client_id} {token_url}");
    let now = state.clock.now().unix_timestamp();
    if let Ok(cache) = state.recipient_tokens.lock()
        && let Some((token, expires)) = cache.get(&key)
        && *expires > now + 30
    {
        return Ok(token.clone());
    }
    let url = check_url(state, token_url)?;
    let claims = serde_json::json!({
        "iss": client_id, "sub": client_id, "aud": token_url,
        "iat": now, "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(state.tokens.gateway_key.kid.clone());
    let assertion = jsonwebtoken::encode(&header, &claims, &state.tokens.gateway_key.encoding)
        .map_err(|e| AttemptError::Permanent(format!("signing the token request: {e}")))?;
    let response = state
        .push_client
        .post(url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", crate::auth::token::ASSERTION_TYPE),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                AttemptError::Timeout
            } else {
                AttemptError::Connect(e.to_string())
            }
        })?;
    let status = response.status().as_u16();
    if !response.status().is_success() {
        // A refused token request is treated like the push it guards.
        return Err(AttemptError::Status {
            code: status,
            retry_after: None,
        });
    }
    let body: Value = response
        .json()
        .await
        .map_err(|e| AttemptError::Connect(e.to_string()))?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or_else(|| AttemptError::Permanent("the token response has no access_token".into()))?
        .to_string();
    let expires_in = body
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(300);
    if let Ok(mut cache) = state.recipient_tokens.lock() {
        cache.insert(key, (token.clone(), now + expires_in));
    }
    Ok(token)
}
