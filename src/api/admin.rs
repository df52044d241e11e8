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
