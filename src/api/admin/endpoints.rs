//! `/admin/endpoints`: the endpoint directory (how each recipient receives).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;

/// `GET /admin/endpoints`: the endpoint directory, secrets redacted.
pub async fn list_endpoints(
    _principal: Principal,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(json!({"endpoints": crate::admin::endpoints(&app).await?})))
}

/// `PUT /admin/endpoints/{ods}`: register or change a recipient's endpoint.
pub async fn put_endpoint(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let body = crate::api::read_body(&req, payload, 64 * 1024).await?;
    let value = crate::fhir::json::parse_body(&body, &app.settings.limits)?;
    let ods = crate::admin::put_endpoint(&app, &principal, &path.into_inner(), value).await?;
    Ok(HttpResponse::Ok().json(json!({"ods": ods.as_str(), "stored": true})))
}
