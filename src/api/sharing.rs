//! `POST /fhir/$sharing-decision`: what a recipient would receive of a patient's document now,
//! and why, resource by resource.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::app::App;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::fhir::FHIR_JSON;

#[tracing::instrument(name = "Sharing decision", skip_all)]
pub async fn sharing_decision(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let params = super::read_json(&req, payload, &app, app.settings.limits.max_body_bytes).await?;
    let answer = crate::decisions::sharing_decision(&app, &principal, &params)
        .await
        .map_err(|r| super::refused(&req, r))?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(answer.to_string()))
}
