//! The HTTP edge: thin handlers, one file per resource. A handler reads its input, calls one use
//! case, and maps the result; it never touches the store. Who may call a route is declared once
//! in the route table ([`routes`]) and checked by the [`Principal`]
//! extractor ([`principal`]); refusals after authentication are audited by one middleware
//! ([`audit_rejections`]); failures become OperationOutcomes in [`error`].

pub mod admin;
pub mod audit;
pub mod bundle;
pub mod communication;
pub mod consent;
pub mod error;
pub mod health;
pub mod in_flight;
pub mod metadata;
pub mod mtls;
pub mod oauth;
pub mod patient;
pub mod principal;
pub mod query;
pub mod routes;
pub mod sharing;
pub mod task;
pub mod translate;
pub mod validate;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use serde_json::Value;

use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::Principal;
use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;

/// Reads a request body, refusing it (413) as soon as it passes `limit` bytes, and (408) when it
/// has not arrived whole within the configured body timeout.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::PayloadTooLarge(
            Issue::error(
                "too-costly",
                format!("The body is larger than the limit of {limit} bytes."),
            )
            .with_code(codes::TOO_LARGE),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let timeout = req
        .app_data::<web::Data<App>>()
        .map(|a| a.settings.server.body_timeout_secs)
        .unwrap_or(30);
    let read = async {
        let mut body = Vec::with_capacity(declared.unwrap_or(8192).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::bad_request(
                    codes::INVALID_JSON,
                    format!("The body could not be read: {e}."),
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(timeout), read).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::RequestTimeout(
            Issue::error(
                "timeout",
                format!("The request body did not arrive within {timeout} s."),
            )
            .with_code(codes::BODY_TIMEOUT),
        )),
    }
}

/// The request's Content-Type header, if readable.
pub fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

/// Checks that the media type is FHIR JSON (`application/fhir+json`, or `application/json`),
/// with any parameters (`charset`, `fhirVersion`).
pub fn check_media_type(req: &HttpRequest) -> Result<(), ApiError> {
    let essence = content_type(req)
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase());
    match essence.as_deref() {
        Some("application/fhir+json") | Some("application/json") => Ok(()),
        other => Err(ApiError::UnsupportedMediaType(
            Issue::error(
                "not-supported",
                format!(
                    "Content-Type {} is not supported; send application/fhir+json.",
                    other.unwrap_or("(none)")
                ),
            )
            .with_code(codes::MEDIA_TYPE),
        )),
    }
}

/// Reads a FHIR JSON body: within `limit` bytes, the FHIR media type, and parsed within the
/// configured depth.
pub async fn read_json(
    req: &HttpRequest,
    payload: web::Payload,
    app: &App,
    limit: usize,
) -> Result<Value, ApiError> {
    let body = read_body(req, payload, limit).await?;
    check_media_type(req)?;
    Ok(crate::fhir::json::parse_body(&body, &app.settings.limits)?)
}

/// The patient a refused request concerned, when the use case got far enough to know, for the
/// audit entry of the refusal.
#[derive(Debug, Clone)]
pub struct RefusedPatient(pub String);

/// A use case's refusal: the patient it named is kept for the audit entry of the refusal.
pub fn refused(req: &HttpRequest, rejected: crate::error::Rejected) -> ApiError {
    if let Some(nhs) = rejected.nhs_number {
        req.extensions_mut().insert(RefusedPatient(nhs));
    }
    rejected.error
}

/// Audits every refusal made after authentication (400, 403, 409, 413, 415, 422) as
/// `input-rejected`, naming the route, the status and the reason. Authentication failures and
/// access denials are audited by the `Principal` extractor, which then keeps no principal here;
/// unexpected failures are logged, not blamed on the input.
pub async fn audit_rejections(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let refused = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .filter(|e| matches!(e.status(), 400 | 403 | 409 | 413 | 415 | 422))
        .map(|e| (e.status(), e.audit_reason()));
    if let Some((status, reason)) = refused {
        let request = res.request();
        let principal = request.extensions().get::<Principal>().cloned();
        let patient = request.extensions().get::<RefusedPatient>().cloned();
        if let (Some(principal), Some(app)) = (principal, request.app_data::<web::Data<App>>()) {
            app.audit
                .record_or_log(AuditEvent::InputRejected {
                    actor: principal.actor(),
                    endpoint: principal::endpoint_name(request),
                    status,
                    reason,
                    nhs_number: patient.map(|p| p.0),
                })
                .await;
        }
    }
    Ok(res)
}
