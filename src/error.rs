//! `ApiError`: the single edge where failures become an HTTP status and an OperationOutcome.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::{Issue, operation_outcome};

/// Every way a request can fail. The body never carries the internal cause.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unreadable request")]
    BadRequest(Vec<Issue>),
    #[error("unauthenticated")]
    Unauthorized(Issue),
    #[error("forbidden")]
    Forbidden(Issue),
    #[error("not found")]
    NotFound(Issue),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("conflict")]
    Conflict(Issue),
    #[error("payload too large")]
    PayloadTooLarge(Issue),
    #[error("unsupported media type")]
    UnsupportedMediaType(Issue),
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    #[error("not ready")]
    Unavailable(Issue),
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

/// Stable codes carried in `OperationOutcome.issue.details` (like hyperswitch's `IR_04`).
pub mod codes {
    pub const INVALID_JSON: &str = "GW-INTAKE-01";
    pub const MEDIA_TYPE: &str = "GW-INTAKE-02";
    pub const TOO_LARGE: &str = "GW-INTAKE-03";
    pub const TOO_DEEP: &str = "GW-INTAKE-04";
    pub const SHAPE: &str = "GW-INTAKE-05";
    pub const TYPED_MODEL: &str = "GW-INTAKE-06";
    pub const AUTHOR_MISMATCH: &str = "GW-INTAKE-07";
    pub const IDEMPOTENCY_CONFLICT: &str = "GW-INTAKE-08";
    pub const NO_TOKEN: &str = "GW-AUTH-01";
    pub const BAD_TOKEN: &str = "GW-AUTH-02";
    pub const CERT_MISMATCH: &str = "GW-AUTH-03";
    pub const ROLE: &str = "GW-AUTH-04";
    pub const SCOPE: &str = "GW-AUTH-05";
    pub const NOT_FOUND: &str = "GW-NOT-FOUND";
    pub const UNKNOWN_ROUTE: &str = "GW-NO-ROUTE";
    pub const UNEXPECTED: &str = "GW-INTERNAL";
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest(vec![Issue::error("invalid", message).with_code(code)])
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::NotFound(Issue::error("not-found", message).with_code(codes::NOT_FOUND))
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Forbidden(Issue::error("forbidden", message).with_code(code))
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Unauthorized(Issue::error("login", message).with_code(code))
    }

    /// The issues shown to the caller.
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ApiError::BadRequest(i) | ApiError::Unprocessable(i) => i.clone(),
            ApiError::Unauthorized(i)
            | ApiError::Forbidden(i)
            | ApiError::NotFound(i)
            | ApiError::Conflict(i)
            | ApiError::PayloadTooLarge(i)
            | ApiError::UnsupportedMediaType(i)
            | ApiError::Unavailable(i) => vec![i.clone()],
            ApiError::MethodNotAllowed => {
                vec![Issue::error(
                    "not-supported",
                    "This method is not supported on this path.",
                )]
            }
            ApiError::Unexpected(_) => vec![
                Issue::error("exception", "The gateway could not complete the request.")
                    .with_code(codes::UNEXPECTED),
            ],
        }
    }

    /// A one-line reason for the audit log (never the internal cause chain).
    pub fn audit_reason(&self) -> String {
        self.issues()
            .iter()
            .map(|i| match &i.expression {
                Some(e) => format!("{} ({e})", i.diagnostics),
                None => i.diagnostics.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unexpected(cause) = self {
            tracing::error!(error = ?cause, "Request failed unexpectedly.");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(FHIR_JSON);
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"throughcare\""),
            ));
        }
        response.body(operation_outcome(&self.issues()).to_string())
    }
}
