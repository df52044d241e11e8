//! `/admin/agreements`: list, read, put (a new version) and retire data-sharing agreements.
//! For the roles `icb` and `admin`. Versions are never edited in place; every change is audited
//! with the version before and after.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;
use crate::pipeline;
use crate::policy::{Agreement, AgreementStatus};
use crate::sharing::{AgreementError, stamp};
use crate::startup::AppState;

const ROLES: &[Role] = &[Role::Icb, Role::Admin];

fn map_error(e: AgreementError) -> ApiError {
    match e {
        AgreementError::Invalid(m) => {
            ApiError::Unprocessable(vec![Issue::error("invalid", m).with_code(codes::SHAPE)])
        }
        AgreementError::VersionConflict { .. } => ApiError::Conflict(
            Issue::error("conflict", e.to_string()).with_code(codes::IDEMPOTENCY_CONFLICT),
        ),
        AgreementError::NotFound(_) => ApiError::not_found(e.to_string()),
        AgreementError::Store(s) => s.into(),
    }
}

fn summary(a: &Agreement) -> Value {
    serde_json::to_value(a).unwrap_or(Value::Null)
}

pub async fn list_agreements(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /admin/agreements",
            ROLES,
            "Agreement",
            Permission::Read,
        )
        .await?;
    let list: Vec<Value> = state.sharing.agreements().iter().map(summary).collect();
    Ok(HttpResponse::Ok().json(json!({"agreements": list})))
}

pub async fn read_agreement(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /admin/agreements/{id}",
            ROLES,
            "Agreement",
            Permission::Read,
        )
        .await?;
    let id = path.into_inner();
    let versions = state.store.agreement_versions(Some(&id)).await?;
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
    Ok(HttpResponse::Ok().json(json!({"id": id, "current": current, "versions": history})))
}

pub async fn put_agreement(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "PUT /admin/agreements/{id}";
    principal
        .authorize(&state, endpoint, ROLES, "Agreement", Permission::Update)
        .await?;
    let id = path.into_inner();
    let result = async {
        let body = super::read_body(&req, payload, 1024 * 1024).await?;
        let value = pipeline::parse_json(&state, &body)?;
        let agreement: Agreement = serde_json::from_value(value).map_err(|e| {
            ApiError::Unprocessable(vec![
                Issue::error(
                    "invalid",
                    format!("The agreement does not fit the schema: {e}."),
                )
                .with_code(codes::SHAPE),
            ])
        })?;
        if agreement.id != id {
            return Err(ApiError::bad_request(
                codes::SHAPE,
                "The body's id differs from the URL's.",
            ));
        }
        state
            .sharing
            .store_version(
                state.store.as_ref(),
                &agreement,
                &principal.actor(),
                &stamp(state.clock.now()),
            )
            .await
            .map_err(map_error)
    }
    .await;
    match result {
        Ok((before, after, stored)) => {
            let status = if stored {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(HttpResponse::build(status).json(
                json!({"id": id, "versionBefore": before, "versionAfter": after, "stored": stored}),
            ))
        }
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, endpoint, &err, None).await;
            Err(err)
        }
    }
}

pub async fn retire_agreement(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "DELETE /admin/agreements/{id}";
    principal
        .authorize(&state, endpoint, ROLES, "Agreement", Permission::Delete)
        .await?;
    let id = path.into_inner();
    let current = state
        .sharing
        .agreements()
        .iter()
        .find(|a| a.id == id)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("Agreement {id} is not known.")))?;
    if current.status == AgreementStatus::Retired {
        return Ok(HttpResponse::Ok()
            .json(json!({"id": id, "version": current.version, "status": "retired"})));
    }
    let mut retired = current;
    retired.version += 1;
    retired.status = AgreementStatus::Retired;
    let (before, after, _) = state
        .sharing
        .store_version(
            state.store.as_ref(),
            &retired,
            &principal.actor(),
            &stamp(state.clock.now()),
        )
        .await
        .map_err(map_error)?;
    Ok(HttpResponse::Ok().json(
        json!({"id": id, "versionBefore": before, "versionAfter": after, "status": "retired"}),
    ))
}

const OPERATORS: &[Role] = &[Role::Icb, Role::Admin];

/// `GET /admin/endpoints`: the endpoint directory.
pub async fn list_endpoints(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /admin/endpoints",
            OPERATORS,
            "Endpoint",
            Permission::Read,
        )
        .await?;
    let list: Vec<Value> = state
        .store
        .endpoints()
        .await?
        .iter()
        .map(|e| {
            json!({"ods": e.ods, "url": e.url, "profile": e.profile,
                   "auth": redact_auth(&e.auth), "updatedAt": e.updated_at, "updatedBy": e.updated_by})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"endpoints": list})))
}

/// Bearer tokens are secrets: show only that one is set.
fn redact_auth(auth: &str) -> Value {
    let mut v: Value = serde_json::from_str(auth).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut()
        && obj.contains_key("bearer_token")
    {
        obj.insert("bearer_token".into(), json!("(set)"));
    }
    v
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointBody {
    url: String,
    /// `uk-core-r4`, `gp-connect-stu3` or `prison`.
    profile: String,
    #[serde(default)]
    auth: Option<Value>,
}

/// `PUT /admin/endpoints/{ods}`: register or change a recipient's push endpoint.
pub async fn put_endpoint(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "PUT /admin/endpoints/{ods}";
    principal
        .authorize(&state, endpoint, OPERATORS, "Endpoint", Permission::Update)
        .await?;
    let result = async {
        let ods = crate::domain::OdsCode::parse(&path.into_inner())
            .map_err(|e| ApiError::bad_request(codes::SHAPE, e))?;
        let body = super::read_body(&req, payload, 64 * 1024).await?;
        let value = pipeline::parse_json(&state, &body)?;
        let parsed: EndpointBody = serde_json::from_value(value).map_err(|e| {
            ApiError::Unprocessable(vec![
                Issue::error(
                    "invalid",
                    format!("The endpoint does not fit the schema: {e}."),
                )
                .with_code(codes::SHAPE),
            ])
        })?;
        let url = reqwest::Url::parse(&parsed.url).map_err(|e| {
            ApiError::Unprocessable(vec![
                Issue::error("invalid", format!("url: {e}"))
                    .at("url")
                    .with_code(codes::SHAPE),
            ])
        })?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(ApiError::Unprocessable(vec![
                Issue::error("invalid", "url must be https")
                    .at("url")
                    .with_code(codes::SHAPE),
            ]));
        }
        if !["uk-core-r4", "gp-connect-stu3", "prison"].contains(&parsed.profile.as_str()) {
            return Err(ApiError::Unprocessable(vec![
                Issue::error(
                    "invalid",
                    "profile must be uk-core-r4, gp-connect-stu3 or prison",
                )
                .at("profile")
                .with_code(codes::SHAPE),
            ]));
        }
        let now = stamp(state.clock.now());
        let record = crate::store::EndpointRecord {
            ods: ods.to_string(),
            url: parsed.url.clone(),
            profile: parsed.profile.clone(),
            auth: parsed.auth.unwrap_or_else(|| json!({})).to_string(),
            updated_at: now,
            updated_by: principal.client_id.clone(),
        };
        let event = crate::audit::AuditEvent::EndpointChanged {
            actor: principal.actor(),
            ods: ods.to_string(),
            url: parsed.url,
            profile: parsed.profile,
        };
        state
            .store
            .put_endpoint(record, vec![event.into_draft()])
            .await?;
        state.delivery_wakeup.notify_one();
        Ok(ods)
    }
    .await;
    match result {
        Ok(ods) => Ok(HttpResponse::Ok().json(json!({"ods": ods.as_str(), "stored": true}))),
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, endpoint, &err, None).await;
            Err(err)
        }
    }
}

/// `GET /admin/deliveries?status=&business-status=&at-risk=&recipient=&document=`.
pub async fn list_deliveries(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "GET /admin/deliveries",
            OPERATORS,
            "Task",
            Permission::Search,
        )
        .await?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|_| ApiError::bad_request(codes::SHAPE, "the query string is unreadable"))?;
    let mut f = crate::store::DeliveryFilter {
        limit: 200,
        ..Default::default()
    };
    for (k, v) in pairs {
        match k.as_str() {
            "status" => f.status = Some(v),
            "business-status" => f.business_status = Some(v),
            "at-risk" => f.at_risk = Some(v == "true"),
            "recipient" => f.recipient_ods = Some(v),
            "document" => f.document_id = Some(v),
            "_count" => f.limit = v.parse().unwrap_or(200),
            other => {
                return Err(ApiError::bad_request(
                    codes::SHAPE,
                    format!("filter {other:?} is not supported"),
                ));
            }
        }
    }
    let rows = state.store.deliveries(&f).await?;
    let list: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({"id": d.id, "document": d.document_id, "recipient": d.recipient_ods,
                   "status": d.status, "businessStatus": d.business_status, "reason": d.reason,
                   "attempts": d.attempts, "nextAttemptAt": d.next_attempt_at, "atRisk": d.at_risk,
                   "releaseDate": d.release_date, "lastStatusCode": d.last_status_code,
                   "updatedAt": d.updated_at})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"deliveries": list})))
}

/// `POST /admin/deliveries/{id}/retry`: replay a failed or dead-lettered delivery.
pub async fn retry_delivery(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    principal
        .authorize(
            &state,
            "POST /admin/deliveries/{id}/retry",
            OPERATORS,
            "Task",
            Permission::Update,
        )
        .await?;
    let id = path.into_inner();
    let d = state
        .store
        .delivery(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Delivery {id} is not known.")))?;
    let event = crate::audit::AuditEvent::DeliveryChanged {
        actor: Some(principal.actor()),
        what: "delivery-requeued",
        delivery_id: d.id.clone(),
        document_id: d.document_id.clone(),
        nhs_number: d.nhs_number.clone(),
        recipient: d.recipient_ods.clone(),
        attempt: d.attempts,
        status_code: None,
        reason: Some("replayed by an operator".into()),
        success: true,
    };
    let now = stamp(state.clock.now());
    if !state
        .store
        .requeue_delivery(&id, &now, vec![event.into_draft()])
        .await?
    {
        return Err(ApiError::Conflict(
            Issue::error(
                "conflict",
                format!(
                    "Delivery {id} is {} ({}): only failed deliveries are replayed.",
                    d.status, d.business_status
                ),
            )
            .with_code(codes::IDEMPOTENCY_CONFLICT),
        ));
    }
    state.delivery_wakeup.notify_one();
    Ok(HttpResponse::Accepted()
        .json(json!({"id": id, "status": "requested", "businessStatus": "scheduled"})))
}
