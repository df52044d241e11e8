//! `POST /fhir/Bundle` (intake) and `GET /fhir/Bundle/{id}`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};

use crate::app::App;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::operation_outcome;
use crate::intake::{self, Receipt};
use crate::policy::Purpose;
use crate::pull::DocumentRead;
use crate::translate::Target;

#[tracing::instrument(name = "Submit document", skip_all)]
pub async fn submit_document(
    req: HttpRequest,
    principal: Principal,
    payload: web::Payload,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let result = async {
        let body = super::read_body(&req, payload, app.settings.limits.max_body_bytes).await?;
        super::check_media_type(&req)?;
        intake::submit(&app, &principal, &body)
            .await
            .map_err(|rejected| {
                if let Some(nhs) = rejected.nhs_number {
                    req.extensions_mut().insert(super::RefusedPatient(nhs));
                }
                rejected.error
            })
    }
    .await;
    let outcome = match &result {
        Ok(Receipt::Created { .. }) => "created".to_string(),
        Ok(Receipt::Repeat { .. }) => "repeat".to_string(),
        Err(e) => e.status().to_string(),
    };
    app.metrics
        .count_intake(&outcome, started.elapsed().as_secs_f64());
    let (status, id, issues) = match result? {
        Receipt::Created { id, issues } => (StatusCode::CREATED, id, issues),
        Receipt::Repeat { id, issues } => (StatusCode::OK, id, issues),
    };
    let location = format!("{}/fhir/Bundle/{id}", app.public_url);
    Ok(HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((header::LOCATION, location))
        .body(operation_outcome(&issues).to_string()))
}

/// The purpose of use a reader asks for: `X-Purpose-Of-Use: ETREAT` requests break-glass.
pub fn purpose(req: &HttpRequest) -> Result<Purpose, ApiError> {
    match req
        .headers()
        .get("X-Purpose-Of-Use")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("TREAT") => Ok(Purpose::Treat),
        Some("ETREAT") => Ok(Purpose::EmergencyTreat),
        Some(other) => Err(ApiError::bad_request(
            codes::PURPOSE,
            format!("X-Purpose-Of-Use {other:?} is not TREAT or ETREAT."),
        )),
    }
}

#[tracing::instrument(name = "Read document", skip_all)]
pub async fn read_document(
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    app: web::Data<App>,
) -> Result<HttpResponse, ApiError> {
    let purpose = purpose(&req)?;
    let target = reader_target(&req, &principal, &app)?;
    match crate::pull::read_document(&app, &principal, &path.into_inner(), purpose, target).await? {
        DocumentRead::AsSent(body) => Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(body)),
        DocumentRead::Copy {
            body,
            withheld,
            emergency,
            warnings,
        } => {
            let mut response = HttpResponse::Ok();
            // Administrative elements that do not conform: counted here, named in the Task of
            // a delivery and in the sender's receipt (the document itself is not altered).
            if !warnings.is_empty() {
                response.insert_header(("X-Throughcare-Warnings", warnings.len().to_string()));
            }
            response.content_type(media_type(target));
            response.insert_header(("X-Throughcare-Withheld", withheld.to_string()));
            if emergency {
                response.insert_header(("X-Throughcare-Emergency-Access", "true"));
            }
            response.insert_header(("X-Throughcare-Profile", target.as_str()));
            Ok(response.body(body))
        }
    }
}

/// The media type of a copy in `target`: STU3 for GP Connect and ITK3.
pub fn media_type(target: Target) -> &'static str {
    if target.is_stu3() {
        "application/fhir+json;fhirVersion=3.0"
    } else {
        FHIR_JSON
    }
}

/// The profile a reader wants its copy in (`_profile`, else Accept's fhirVersion, else its
/// registration): the query and header are read here, the rule is the pull use case's.
pub fn reader_target(
    req: &HttpRequest,
    principal: &Principal,
    app: &App,
) -> Result<Target, ApiError> {
    let params = super::query::params(req)?;
    let profile = params.get("_profile");
    let accept = req
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    crate::pull::reader_target(app, principal, profile, accept)
}
