//! `GET /healthz` (the process answers), `GET /readyz` (the store answers) and `GET /metrics`.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;
use crate::fhir::outcome::Issue;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(app: web::Data<App>) -> Result<HttpResponse, ApiError> {
    app.ready().await.map_err(|e| {
        tracing::warn!(error = %e, "Store is not ready.");
        ApiError::Unavailable(Issue::error("transient", "The store is not ready."))
    })?;
    let report = app.validator.report();
    let packages: Vec<String> = report
        .loaded_packages
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let missing: Vec<String> = report
        .missing_packages
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "status": "ready",
        "fhir": {
            "packages": packages,
            "missingPackages": missing,
            "profiles": report.profiles,
            "valueSets": report.value_sets,
            "codeSystems": report.code_systems,
            "invariantsNotEvaluated": report.invariants_not_evaluated.len(),
        }
    })))
}

/// `GET /metrics`: Prometheus text exposition. Carries counts only, never patient data.
pub async fn metrics(app: web::Data<App>) -> Result<HttpResponse, ApiError> {
    let text = app.metrics_text().await?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}
