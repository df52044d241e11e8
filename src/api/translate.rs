//! `POST /fhir/Bundle/$translate?target=uk-core-r4|gp-connect-stu3|prison` (a preview that
//! stores nothing, audited) and `POST /fhir/ConceptMap/$translate` (code translation).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::translate::{ConceptTranslateRequest, Target};

#[tracing::instrument(name = "Translate preview", skip_all)]
pub async fn translate_bundle(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let params = super::query::params(&req)?;
    let target = params.get("target").ok_or_else(|| {
        ApiError::bad_request(
            codes::PARAMETER,
            "Give ?target=uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3.",
        )
    })?;
    let target: Target = target.parse().map_err(|_| {
        ApiError::bad_request(
            codes::PARAMETER,
            format!("target {target:?} is not uk-core-r4, gp-connect-stu3, prison or itk-edischarge-stu3"),
        )
    })?;
    let document =
        super::read_json(&req, payload, &app, app.settings.limits.max_body_bytes).await?;
    let translation = crate::preview::translate(&app, &principal, document, target).await?;
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
    _principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    // Any authenticated client may translate codes (DESIGN §10): the Principal is the check.
    let params = super::read_json(&req, payload, &app, 1024 * 1024).await?;
    if params.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::unprocessable(
            codes::SHAPE,
            "The body must be a Parameters resource.",
            "Parameters",
        ));
    }
    let request = ConceptTranslateRequest::from_parameters(&params).map_err(|m| {
        ApiError::unprocessable(codes::OPERATION_PARAMETERS, m, "Parameters.parameter")
    })?;
    let result = app.translator.concept_translate(&request);
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(result.to_parameters().to_string()))
}
