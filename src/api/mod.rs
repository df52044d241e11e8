//! HTTP handlers: thin, one file per resource. They extract the `Principal` and the payload,
//! call one pipeline function, and map its result.

pub mod admin;
pub mod audit;
pub mod bundle;
pub mod consent;
pub mod health;
pub mod metadata;
pub mod oauth;
pub mod patient;
pub mod sharing;
pub mod task;
pub mod translate;
pub mod validate;

use actix_web::{HttpRequest, web};
use futures_util::StreamExt;

use crate::error::{ApiError, codes};
use crate::fhir::outcome::Issue;

/// Reads a request body, refusing it (413) as soon as it passes `limit` bytes.
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
}

/// The request's Content-Type header, if readable.
pub fn content_type(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}
