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
