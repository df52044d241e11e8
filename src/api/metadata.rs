//! `GET /fhir/metadata`: the CapabilityStatement.

use actix_web::{HttpResponse, web};

use crate::fhir::FHIR_JSON;
use crate::startup::AppState;

pub async fn capability_statement(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(state.capability.clone())
}
