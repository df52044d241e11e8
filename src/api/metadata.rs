//! `GET /fhir/metadata`: the CapabilityStatement.

use actix_web::{HttpResponse, web};

use crate::app::App;
use crate::fhir::FHIR_JSON;

pub async fn capability_statement(app: web::Data<App>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(app.capability.clone())
}
