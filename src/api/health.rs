//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers).

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::error::ApiError;
use crate::fhir::outcome::Issue;
use crate::startup::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "Store is not ready.");
        ApiError::Unavailable(Issue::error("transient", "The store is not ready."))
    })?;
    Ok(HttpResponse::Ok().json(json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text exposition. Carries counts only, never patient data.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (states, at_risk) = state.store.delivery_counts().await?;
    state.metrics.deliveries.clear();
    for (status, business_status, n) in states {
        state
            .metrics
            .deliveries
            .get_or_create(&crate::metrics::StateLabel {
                status,
                business_status,
            })
            .set(n);
    }
    state.metrics.at_risk.set(at_risk);
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render()))
}
