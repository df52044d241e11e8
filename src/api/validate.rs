//! `POST /fhir/$validate`: check a resource against a profile without storing anything.
//! The body is a Parameters resource (`resource`, optional `profile`) or a bare resource with an
//! optional `?profile=` parameter. Without a profile, a prison document is checked against the
//! prison profiles, anything else against its claimed `meta.profile` or its base definition.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::fhir::json::parameter as param;

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};

/// Picks the resource and profile from a `$validate` body and the `profile` query parameter.
pub fn resource_and_profile(
    body: Value,
    query_profile: Option<String>,
) -> Result<(Value, Option<String>), ApiError> {
    if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        let resource = param(&body, "resource")
            .and_then(|p| p.get("resource"))
            .cloned()
            .ok_or_else(|| {
                ApiError::Unprocessable(vec![
                    Issue::error("required", "Parameters needs a 'resource' parameter.")
                        .at("Parameters.parameter")
                        .with_code(codes::OPERATION_PARAMETERS),
                ])
            })?;
        let profile = param(&body, "profile")
            .and_then(|p| {
                p.get("valueUri")
                    .or_else(|| p.get("valueCanonical"))
                    .or_else(|| p.get("valueString"))
            })
            .and_then(Value::as_str)
            .map(str::to_string)
            .or(query_profile);
        Ok((resource, profile))
    } else {
        Ok((body, query_profile))
    }
}

#[tracing::instrument(name = "Validate", skip_all)]
pub async fn validate_resource(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let value = super::read_json(&req, payload, &app, app.settings.limits.max_body_bytes).await?;
    let query_profile = super::query::params(&req)?
        .get("profile")
        .map(str::to_string);
    let (resource, profile) = resource_and_profile(value, query_profile)?;
    let issues = crate::preview::validate(&app, &principal, &resource, profile.as_deref()).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(operation_outcome(&issues).to_string()))
}
