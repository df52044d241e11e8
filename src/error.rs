//! `ApiError`: every way a use case can refuse or fail a request, with its HTTP status as a
//! number. No web-framework types here: the edge (`api::error`) turns an `ApiError` into a
//! response with an OperationOutcome. The conversions from the stages' and services' errors
//! (store, translation, body reading, a stored document) live here too, so that the stages
//! below never know about HTTP statuses.

use crate::fhir::outcome::Issue;

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
    #[error("too many requests")]
    TooManyRequests {
        issue: Issue,
        /// Seconds to wait, for `Retry-After`.
        retry_after_secs: u64,
    },
    #[error("not ready")]
    Unavailable(Issue),
    #[error("request timeout")]
    RequestTimeout(Issue),
    #[error("unexpected error")]
    Unexpected(#[from] anyhow::Error),
}

/// The gateway's stable failure codes.
pub use crate::codes;

/// A refused request, with the patient when the use case got far enough to name one (for the
/// audit entry the edge records).
#[derive(Debug)]
pub struct Rejected {
    pub error: ApiError,
    pub nhs_number: Option<String>,
}

impl From<ApiError> for Rejected {
    fn from(error: ApiError) -> Self {
        Rejected {
            error,
            nhs_number: None,
        }
    }
}

impl ApiError {
    /// This refusal, naming the patient it concerned.
    pub fn about(self, nhs_number: &str) -> Rejected {
        Rejected {
            error: self,
            nhs_number: Some(nhs_number.to_string()),
        }
    }
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

    /// 429: a rate limit was reached; try again after `retry_after_secs`.
    pub fn too_many_requests(retry_after_secs: u64) -> ApiError {
        ApiError::TooManyRequests {
            issue: Issue::error(
                "throttled",
                format!(
                    "Too many requests: the rate limit was reached. Try again in {retry_after_secs} s."
                ),
            )
            .with_code(codes::RATE_LIMITED),
            retry_after_secs,
        }
    }

    /// 422 with one issue naming the element.
    pub fn unprocessable(
        code: &'static str,
        message: impl Into<String>,
        expression: impl Into<String>,
    ) -> ApiError {
        ApiError::Unprocessable(vec![
            Issue::error("invalid", message)
                .at(expression)
                .with_code(code),
        ])
    }

    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict(_) => 409,
            ApiError::PayloadTooLarge(_) => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Unprocessable(_) => 422,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Unavailable(_) => 503,
            ApiError::RequestTimeout(_) => 408,
            ApiError::Unexpected(_) => 500,
        }
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
            | ApiError::Unavailable(i)
            | ApiError::RequestTimeout(i)
            | ApiError::TooManyRequests { issue: i, .. } => vec![i.clone()],
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

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        ApiError::Unexpected(anyhow::Error::new(err))
    }
}

impl From<crate::translate::TranslateError> for ApiError {
    fn from(e: crate::translate::TranslateError) -> Self {
        use crate::translate::TranslateError;
        match e {
            TranslateError::Shape {
                expression,
                message,
            } => ApiError::unprocessable(codes::TRANSLATE_SHAPE, message, expression),
            other => ApiError::Unprocessable(vec![
                Issue::error("not-supported", other.to_string())
                    .with_code(codes::TRANSLATE_UNSUPPORTED),
            ]),
        }
    }
}

impl From<crate::fhir::json::BodyError> for ApiError {
    fn from(e: crate::fhir::json::BodyError) -> Self {
        use crate::fhir::json::BodyError;
        match e {
            BodyError::TooDeep(depth) => ApiError::bad_request(
                codes::TOO_DEEP,
                format!("The JSON is nested more than {depth} levels deep."),
            ),
            BodyError::Invalid(why) => ApiError::bad_request(
                codes::INVALID_JSON,
                format!("The body is not valid JSON: {why}."),
            ),
            BodyError::UnreadableNumber { path, number } => ApiError::BadRequest(vec![
                Issue::error(
                    "invalid",
                    format!("The number {number} cannot be read as a number."),
                )
                .at(path)
                .with_code(codes::INVALID_JSON),
            ]),
            BodyError::TooManyEntries { found, max } => ApiError::PayloadTooLarge(
                Issue::error(
                    "too-costly",
                    format!(
                        "The body has {found} Bundle entries or more; at most {max} are accepted."
                    ),
                )
                .with_code(codes::TOO_LARGE),
            ),
            BodyError::DuplicateKey(key) => ApiError::bad_request(
                codes::DUPLICATE_KEY,
                format!(
                    "The JSON has the key {key:?} twice in one object; a document must read one way only."
                ),
            ),
        }
    }
}

impl From<crate::recipient::SubjectError> for ApiError {
    fn from(e: crate::recipient::SubjectError) -> Self {
        ApiError::Unexpected(anyhow::Error::new(e))
    }
}
