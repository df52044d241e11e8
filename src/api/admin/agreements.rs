//! `/admin/agreements`: list, read, put (a new version) and retire data-sharing agreements.
//! Versions are never edited in place; every change is audited with the version before and
//! after.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;

pub async fn list_agreements(
    _principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({"agreements": crate::admin::agreements(&app)})))
}

pub async fn read_agreement(
    _principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(crate::admin::agreement(&app, &path.into_inner()).await?))
}

pub async fn put_agreement(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let body = crate::api::read_body(&req, payload, 1024 * 1024).await?;
    let value = crate::fhir::json::parse_body(&body, &app.settings.limits)?;
    let change = crate::admin::put_agreement(&app, &principal, &id, value).await?;
    let status = if change.stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(
        HttpResponse::build(status).json(json!({"id": id, "versionBefore": change.before,
        "versionAfter": change.after, "stored": change.stored})),
    )
}

pub async fn retire_agreement(
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let change = crate::admin::retire_agreement(&app, &principal, &id).await?;
    let body = if change.stored {
        json!({"id": id, "versionBefore": change.before, "versionAfter": change.after, "status": "retired"})
    } else {
        json!({"id": id, "version": change.after, "status": "retired"})
    };
    Ok(HttpResponse::Ok().json(body))
}
