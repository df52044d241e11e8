//! `POST /fhir/$validate`: check a resource against a profile without storing anything.
//! The body is a Parameters resource (`resource`, optional `profile`) or a bare resource with an
//! optional `?profile=` parameter. Without a profile, a prison document is checked against the
//! prison profiles, anything else against its claimed `meta.profile` or its base definition.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;

use crate::fhir::json::parameter as param;

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};
use crate::pipeline;
use crate::startup::AppState;
use crate::validate::ProfileSet;

/// Picks the resource and profile from a `$validate` body and query string.
pub fn resource_and_profile(body: Value, query: &str) -> Result<(Value, Option<String>), ApiError> {
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let query_profile = query
        .into_iter()
        .find(|(k, _)| k == "profile")
        .map(|(_, v)| v);
    if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        let resource = param(&body, "resource")
            .and_then(|p| p.get("resource"))
            .cloned()
            .ok_or_else(|| {
                ApiError::Unprocessable(vec![
                    Issue::error("required", "Parameters needs a 'resource' parameter.")
                        .at("Parameters.parameter")
                        .with_code(codes::SHAPE),
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
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "POST /fhir/$validate";
    principal
        .authorize(
            &state,
            endpoint,
            &[
                Role::Prison,
                Role::Gp,
                Role::Icb,
                Role::Service,
                Role::Admin,
            ],
            "Bundle",
            Permission::Read,
        )
        .await?;
    let result = async {
        let body = super::read_body(&req, payload, state.settings.limits.max_body_bytes).await?;
        pipeline::check_media_type(super::content_type(&req))?;
        let value = pipeline::parse_json(&state, &body)?;
        let (resource, profile) = resource_and_profile(value, req.query_string())?;
        let set = choose_set(&resource);
        Ok::<_, ApiError>(state.validator.validate(&resource, profile.as_deref(), set))
    }
    .await;
    match result {
        Ok(issues) => {
            state
                .audit
                .record(crate::audit::AuditEvent::Searched {
                    actor: principal.actor(),
                    endpoint: endpoint.into(),
                    nhs_number: None,
                    results: issues.len(),
                })
                .await?;
            Ok(HttpResponse::Ok()
                .content_type(FHIR_JSON)
                .body(operation_outcome(&issues).to_string()))
        }
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, endpoint, &err, None).await;
            Err(err)
        }
    }
}

/// Prison documents (and resources claiming a prison profile) default to the prison profiles;
/// everything else to UK Core.
pub fn choose_set(resource: &Value) -> ProfileSet {
    let claims_prison = |r: &Value| {
        r.pointer("/meta/profile")
            .and_then(Value::as_array)
            .is_some_and(|p| {
                p.iter()
                    .filter_map(Value::as_str)
                    .any(|u| u.starts_with(crate::validate::PRISON_SD_BASE))
            })
    };
    let is_document = resource.get("type").and_then(Value::as_str) == Some("document")
        && resource
            .pointer("/entry/0/resource/resourceType")
            .and_then(Value::as_str)
            == Some("Composition");
    if claims_prison(resource) || is_document {
        ProfileSet::Prison
    } else {
        ProfileSet::UkCore
    }
}
