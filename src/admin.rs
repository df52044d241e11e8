//! Administration use cases: data-sharing agreements (versioned, never edited in place), the
//! endpoint directory, and the deliveries operators watch and replay. Every change is audited.
//!
//! Who may change what: agreements are written by the `admin` role only (the route table); an
//! endpoint by `admin` for any organisation and by an ICB only for the organisations of its
//! area (`policy.icb_areas`, checked here). Endpoints are `https` (plain `http` to loopback only
//! behind `delivery.allow_loopback_http`), and pointing an existing endpoint elsewhere raises an
//! alert: an audited `endpoint-redirected` event and the `endpoint_redirects` counter.

use serde_json::{Value, json};

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::domain::{OdsCode, Role, TaskStatus};
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::policy::{Agreement, AgreementStatus};
use crate::sharing::AgreementError;
use crate::store::DeliveryFilter;
use crate::translate::Target;
use crate::transport::endpoint::{Endpoint, EndpointAuth, EndpointKind};

impl From<AgreementError> for ApiError {
    fn from(e: AgreementError) -> Self {
        match e {
            AgreementError::Invalid(m) => ApiError::Unprocessable(vec![
                Issue::error("invalid", m).with_code(codes::AGREEMENT_INVALID),
            ]),
            AgreementError::VersionConflict { .. } => ApiError::Conflict(
                Issue::error("conflict", e.to_string())
                    .with_code(codes::AGREEMENT_VERSION_CONFLICT),
            ),
            AgreementError::NotFound(_) => ApiError::not_found(e.to_string()),
            AgreementError::Store(s) => s.into(),
        }
    }
}

/// The latest version of every agreement.
pub fn agreements(app: &App) -> Vec<Value> {
    app.sharing
        .agreements()
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect()
}

/// One agreement with its whole version history.
pub async fn agreement(app: &App, id: &str) -> Result<Value, ApiError> {
    let versions = app.store.agreement_versions(Some(id)).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("Agreement {id} is not known.")));
    }
    let history: Vec<Value> = versions
        .iter()
        .map(|r| {
            json!({"version": r.version, "status": r.status, "recordedAt": r.recorded_at,
                   "recordedBy": r.recorded_by,
                   "agreement": serde_json::from_str::<Value>(&r.body).unwrap_or(Value::Null)})
        })
        .collect();
    let current = history.last().cloned().unwrap_or(Value::Null);
    Ok(json!({"id": id, "current": current, "versions": history}))
}

/// What storing an agreement version did.
pub struct AgreementChange {
    pub before: Option<u32>,
    pub after: u32,
    /// A new version was stored (not a repeat of the stored one).
    pub stored: bool,
}

/// Stores a new version of agreement `id` from its JSON form.
pub async fn put_agreement(
    app: &App,
    principal: &Principal,
    id: &str,
    body: Value,
) -> Result<AgreementChange, ApiError> {
    let agreement: Agreement = serde_json::from_value(body).map_err(|e| {
        ApiError::Unprocessable(vec![
            Issue::error(
                "invalid",
                format!("The agreement does not fit the schema: {e}."),
            )
            .with_code(codes::AGREEMENT_INVALID),
        ])
    })?;
    if agreement.id != id {
        return Err(ApiError::bad_request(
            codes::AGREEMENT_INVALID,
            "The body's id differs from the URL's.",
        ));
    }
    store_version(app, principal, &agreement).await
}

/// Stores a new agreement version, audited, as the caller.
async fn store_version(
    app: &App,
    principal: &Principal,
    agreement: &Agreement,
) -> Result<AgreementChange, ApiError> {
    let (before, after, stored) = app
        .sharing
        .store_version(
            app.store.as_ref(),
            agreement,
            &principal.actor(),
            &app.now_stamp(),
        )
        .await?;
    Ok(AgreementChange {
        before,
        after,
        stored,
    })
}

/// Retires agreement `id` (a new version with status retired). Retiring a retired agreement
/// changes nothing.
pub async fn retire_agreement(
    app: &App,
    principal: &Principal,
    id: &str,
) -> Result<AgreementChange, ApiError> {
    let current = app
        .sharing
        .agreements()
        .iter()
        .find(|a| a.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Agreement {id} is not known.")))?;
    if current.status == AgreementStatus::Retired {
        return Ok(AgreementChange {
            before: Some(current.version),
            after: current.version,
            stored: false,
        });
    }
    let mut retired = current;
    retired.version += 1;
    retired.status = AgreementStatus::Retired;
    store_version(app, principal, &retired).await
}

/// The endpoint directory, with secrets redacted.
pub async fn endpoints(app: &App) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for r in app.store.endpoints().await? {
        let auth = match Endpoint::from_record(&r) {
            Ok(e) => e.auth.redacted(),
            Err(e) => json!({"unreadable": e}),
        };
        out.push(
            json!({"ods": r.ods, "kind": r.kind, "url": r.url, "mailbox": r.mailbox,
                        "workflow": r.workflow, "profile": r.profile,
                        "auth": auth, "updatedAt": r.updated_at, "updatedBy": r.updated_by}),
        );
    }
    Ok(out)
}

/// An endpoint as an operator writes it.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    #[serde(default)]
    pub kind: Option<String>,
    /// `fhir-rest`: where copies are POSTed.
    #[serde(default)]
    pub url: Option<String>,
    /// `mesh`: the recipient's mailbox (absent: MESH endpoint lookup by ODS code).
    #[serde(default)]
    pub mailbox: Option<String>,
    /// `mesh`: the document workflow (default `TOC_FHIR_IP_DISCH`).
    #[serde(default)]
    pub workflow: Option<String>,
    /// `uk-core-r4`, `gp-connect-stu3` or `prison`.
    pub profile: String,
    #[serde(default)]
    pub auth: Option<Value>,
}

fn endpoint_invalid(message: impl Into<String>, expression: &str) -> ApiError {
    ApiError::unprocessable(codes::ENDPOINT_INVALID, message, expression)
}

/// Whether `principal` may change the endpoint of `ods`: the gateway operator for every
/// organisation, an ICB for the organisations of its configured area (and itself).
fn may_administer(app: &App, principal: &Principal, ods: &OdsCode) -> Result<(), ApiError> {
    match principal.role {
        Role::Admin => Ok(()),
        Role::Icb if app.settings.policy.icb_administers(&principal.ods, ods) => Ok(()),
        Role::Icb => Err(ApiError::forbidden(
            codes::ADMIN_AREA,
            format!(
                "{ods} is outside the area the ICB {} administers (policy.icb_areas).",
                principal.ods
            ),
        )),
        other => Err(ApiError::forbidden(
            codes::ROLE,
            format!("The role '{}' may not change endpoints.", other.as_str()),
        )),
    }
}

/// The token URL of an endpoint's auth, if it fetches tokens.
fn token_url(auth: &EndpointAuth) -> Option<String> {
    match auth {
        EndpointAuth::TokenUrl { token_url, .. } => Some(token_url.clone()),
        _ => None,
    }
}

/// Registers or changes a recipient's endpoint; copies waiting for a pull become due.
pub async fn put_endpoint(
    app: &App,
    principal: &Principal,
    ods: &str,
    body: Value,
) -> Result<OdsCode, ApiError> {
    let ods = OdsCode::parse(ods).map_err(|e| ApiError::bad_request(codes::BAD_ID, e))?;
    may_administer(app, principal, &ods)?;
    let parsed: EndpointBody = serde_json::from_value(body).map_err(|e| {
        ApiError::Unprocessable(vec![
            Issue::error(
                "invalid",
                format!("The endpoint does not fit the schema: {e}."),
            )
            .with_code(codes::ENDPOINT_INVALID),
        ])
    })?;
    let kind = match parsed.kind.as_deref() {
        None => EndpointKind::FhirRest,
        Some(k) => k.parse().map_err(|e: String| endpoint_invalid(e, "kind"))?,
    };
    let (url, mesh) = match kind {
        EndpointKind::FhirRest => {
            let url = parsed
                .url
                .clone()
                .ok_or_else(|| endpoint_invalid("a fhir-rest endpoint needs a url", "url"))?;
            if parsed.mailbox.is_some() || parsed.workflow.is_some() {
                return Err(endpoint_invalid(
                    "mailbox and workflow are for mesh endpoints",
                    "mailbox",
                ));
            }
            crate::transport::endpoint::check_url(&url, app.settings.delivery.allow_loopback_http)
                .map_err(|e| endpoint_invalid(e, "url"))?;
            (url, None)
        }
        EndpointKind::Mesh => {
            if parsed.url.is_some() {
                return Err(endpoint_invalid(
                    "a mesh endpoint has a mailbox, not a url",
                    "url",
                ));
            }
            if app.settings.mesh.is_none() {
                return Err(endpoint_invalid(
                    "this gateway has no MESH mailbox ([mesh] is not configured)",
                    "kind",
                ));
            }
            if parsed.profile != "itk-edischarge-stu3" {
                return Err(endpoint_invalid(
                    "a mesh endpoint receives ITK3 Transfer of Care messages: profile itk-edischarge-stu3",
                    "profile",
                ));
            }
            let address = crate::transport::endpoint::MeshAddress::new(
                parsed.mailbox.as_deref(),
                parsed.workflow.as_deref(),
            )
            .map_err(|e| endpoint_invalid(e, "mailbox"))?;
            (String::new(), Some(address))
        }
    };
    let profile = parsed.profile.parse::<Target>().map_err(|_| {
        endpoint_invalid(
            "profile must be uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3",
            "profile",
        )
    })?;
    let auth = EndpointAuth::parse(parsed.auth.as_ref().unwrap_or(&Value::Null))
        .map_err(|e| endpoint_invalid(e, "auth"))?;
    if let Some(url) = token_url(&auth) {
        crate::transport::endpoint::check_url(&url, app.settings.delivery.allow_loopback_http)
            .map_err(|e| endpoint_invalid(format!("auth.token_url: {e}"), "auth.token_url"))?;
    }
    // Where the endpoint sends copies and token requests now. (Two changes racing each other
    // may both name the same "before"; both are audited and both raise the alert.)
    let before: Option<(String, Option<String>)> =
        app.store.endpoint(ods.as_str()).await?.map(|r| {
            let token = Endpoint::from_record(&r)
                .ok()
                .and_then(|e| token_url(&e.auth));
            (r.url, token)
        });
    let endpoint = Endpoint {
        ods: ods.to_string(),
        kind,
        url,
        mesh,
        profile,
        auth,
        updated_at: app.now_stamp(),
        updated_by: principal.client_id.clone(),
    };
    let new_token_url = token_url(&endpoint.auth);
    let redirected = before
        .as_ref()
        .filter(|(url, token)| *url != endpoint.url || *token != new_token_url);
    let mut events = vec![
        AuditEvent::EndpointChanged {
            actor: principal.actor(),
            ods: ods.to_string(),
            url_before: before.as_ref().map(|(url, _)| url.clone()),
            url: endpoint.url.clone(),
            profile: profile.as_str().to_string(),
        }
        .into_draft(),
    ];
    if let Some((url_before, token_url_before)) = redirected {
        events.push(
            AuditEvent::EndpointRedirected {
                actor: principal.actor(),
                ods: ods.to_string(),
                url_before: url_before.clone(),
                url: endpoint.url.clone(),
                token_url_before: token_url_before.clone(),
                token_url: new_token_url.clone(),
            }
            .into_draft(),
        );
    }
    app.store.put_endpoint(endpoint.to_record(), events).await?;
    if redirected.is_some() {
        // The alert, until an escalation channel exists: the audited event above and a metric.
        app.metrics.endpoint_redirects.inc();
        tracing::warn!(
            ods = %ods,
            by = %principal.client_id,
            "An existing recipient endpoint was redirected (audited as endpoint-redirected)."
        );
    }
    app.delivery_wakeup.notify_one();
    Ok(ods)
}

/// Deliveries for operators (all organisations), newest first.
pub async fn deliveries(app: &App, filter: &DeliveryFilter) -> Result<Vec<Value>, ApiError> {
    Ok(app
        .store
        .deliveries(filter)
        .await?
        .iter()
        .map(|d| {
            json!({"id": d.id, "document": d.document_id, "recipient": d.recipient_ods,
                   "status": d.status.as_str(), "businessStatus": d.business_status.as_str(),
                   "reasonCode": d.reason_code, "reason": d.reason,
                   "attempts": d.attempts, "nextAttemptAt": d.next_attempt_at, "atRisk": d.at_risk,
                   "releaseDate": d.release_date, "lastStatusCode": d.last_status_code,
                   "updatedAt": d.updated_at})
        })
        .collect())
}

/// Replays a failed or dead-lettered delivery, or releases a held one. Either way the copy is
/// made again when the delivery is next attempted, with policy, translation and the verdict of
/// that moment: a release sends the copy only if it is then fit to go (say, the mappings or
/// the endpoint's profile were corrected); a copy still held is held again, never sent with a
/// guessed dose.
pub async fn retry_delivery(app: &App, principal: &Principal, id: &str) -> Result<(), ApiError> {
    let d = app
        .store
        .delivery(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Delivery {id} is not known.")))?;
    let held = d.status == TaskStatus::OnHold;
    let event = AuditEvent::DeliveryChanged {
        actor: Some(principal.actor()),
        what: if held {
            "delivery-released"
        } else {
            "delivery-requeued"
        },
        delivery_id: d.id.clone(),
        document_id: d.document_id.clone(),
        nhs_number: d.nhs_number.clone(),
        recipient: d.recipient_ods.clone(),
        attempt: d.attempts,
        status_code: None,
        reason: Some(if held {
            "hold released by an operator: the copy is made again at send time".into()
        } else {
            "replayed by an operator".into()
        }),
        success: true,
    };
    let requeued = (d.status == TaskStatus::Failed || held)
        && app
            .store
            .requeue_delivery(id, &app.now_stamp(), vec![event.into_draft()])
            .await?;
    if !requeued {
        return Err(ApiError::Conflict(
            Issue::error(
                "conflict",
                format!(
                    "Delivery {id} is {} ({}): only failed deliveries are replayed, and held ones released.",
                    d.status, d.business_status
                ),
            )
            .with_code(codes::NOT_REPLAYABLE),
        ));
    }
    app.delivery_wakeup.notify_one();
    Ok(())
}
