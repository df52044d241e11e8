//! `POST /fhir/Bundle/$translate?target=uk-core-r4|gp-connect-stu3|prison` (a preview that
//! stores nothing, audited) and `POST /fhir/ConceptMap/$translate` (code translation).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{Permission, Principal};
use crate::domain::Role;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::Issue;
use crate::pipeline;
use crate::startup::AppState;
use crate::translate::{ConceptTranslateRequest, Source, Target, TranslateError};

fn unprocessable(message: impl Into<String>, expression: &str) -> ApiError {
    ApiError::Unprocessable(vec![
        Issue::error("invalid", message)
            .at(expression)
            .with_code(codes::SHAPE),
    ])
}

/// Maps a translation failure to a 422 naming the element.
pub fn translate_error(e: TranslateError) -> ApiError {
    match e {
        TranslateError::Shape {
            expression,
            message,
        } => unprocessable(message, &expression),
        other => ApiError::Unprocessable(vec![
            Issue::error("not-supported", other.to_string()).with_code(codes::SHAPE),
        ]),
    }
}

#[tracing::instrument(name = "Translate preview", skip_all)]
pub async fn translate_bundle(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let endpoint = "POST /fhir/Bundle/$translate";
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
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
        let target = query
            .iter()
            .find(|(k, _)| k == "target")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                ApiError::bad_request(
                    codes::SHAPE,
                    "Give ?target=uk-core-r4, gp-connect-stu3 or prison.",
                )
            })?;
        let target: Target = target.parse().map_err(|_| {
            ApiError::bad_request(
                codes::SHAPE,
                format!("target {target:?} is not uk-core-r4, gp-connect-stu3 or prison"),
            )
        })?;
        let body = super::read_body(&req, payload, state.settings.limits.max_body_bytes).await?;
        pipeline::check_media_type(super::content_type(&req))?;
        let document = pipeline::parse_json(&state, &body)?;
        let source = Source::detect(&document).ok_or_else(|| {
            unprocessable(
                "The body is neither a prison document nor a GP Connect structured record.",
                "Bundle",
            )
        })?;
        let translation = state
            .translator
            .translate_owned(source, target, document)
            .map_err(translate_error)?;
        Ok::<_, ApiError>((source, target, translation))
    }
    .await;
    let (source, target, translation) = match result {
        Ok(t) => t,
        Err(err) => {
            pipeline::audit_rejection(&state, &principal, endpoint, &err, None).await;
            return Err(err);
        }
    };
    state
        .audit
        .record(crate::audit::AuditEvent::Searched {
            actor: principal.actor(),
            endpoint: format!("{endpoint} {}->{}", source.as_str(), target.as_str()),
            nhs_number: None,
            results: translation.losses.len(),
        })
        .await?;
    let mut issues = translation.loss_issues();
    if issues.is_empty() {
        issues.push(json!({"severity": "information", "code": "informational", "diagnostics": "Everything was mapped."}));
    }
    let parameters = json!({
        "resourceType": "Parameters",
        "parameter": [
            {"name": "return", "resource": translation.output},
            {"name": "outcome", "resource": {"resourceType": "OperationOutcome", "issue": issues}}
        ]
    });
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(parameters.to_string()))
}

#[tracing::instrument(name = "Translate code", skip_all)]
pub async fn translate_code(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Any authenticated client may translate codes (DESIGN §10): the Principal is the check.
    let _ = &principal;
    let body = super::read_body(&req, payload, 1024 * 1024).await?;
    pipeline::check_media_type(super::content_type(&req))?;
    let params: Value = pipeline::parse_json(&state, &body)?;
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(unprocessable(
            "The body must be a Parameters resource.",
            "Parameters",
        ));
    }
    let request = ConceptTranslateRequest::from_parameters(&params)
        .map_err(|m| unprocessable(m, "Parameters.parameter"))?;
    let result = state.translator.concept_translate(&request);
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(result.to_parameters().to_string()))
}
