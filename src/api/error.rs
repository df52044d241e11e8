//! The edge where failures become an HTTP status and an OperationOutcome body.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::ApiError;
use crate::fhir::FHIR_JSON;
use crate::fhir::outcome::operation_outcome;

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unexpected(cause) = self {
            // The cause chain may quote what it failed on: no NHS number reaches the log.
            let cause = format!("{cause:?}");
            tracing::error!(error = %crate::domain::mask_nhs_numbers(&cause), "Request failed unexpectedly.");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(FHIR_JSON);
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"throughcare\""),
            ));
        }
        if let ApiError::TooManyRequests {
            retry_after_secs, ..
        } = self
        {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
        }
        response.body(operation_outcome(&self.issues()).to_string())
    }
}
