//! Mutual TLS at the edge: every route but those the route table declares [`Access::Open`]
//! (metadata, the well-known documents, `/healthz`, `/readyz`) needs a client certificate that
//! chained to the configured CA (the TLS layer verified it and recorded it in
//! [`PeerIdentity`](crate::auth::PeerIdentity)). A request without one is a failed
//! authentication: sampled into the audit log, counted against its source address, and
//! answered 401 (an OperationOutcome, or RFC 6749 `invalid_client` at the token endpoint). A
//! development set-up may relax this (`tls.require_client_cert_for_api = false`).

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use super::routes::{Access, AccessTable};
use crate::app::App;
use crate::auth::PeerIdentity;
use crate::error::{ApiError, codes};

/// The token endpoint, which answers in RFC 6749 JSON rather than FHIR.
pub const TOKEN_PATH: &str = "/oauth2/token";

/// Whether the route `pattern` (`None`: no route) needs a client certificate.
fn needs_certificate(req: &ServiceRequest) -> bool {
    let Some(pattern) = req.match_pattern() else {
        // No route: the router answers 404 (or 405), revealing nothing the API description
        // does not.
        return false;
    };
    let access = req
        .app_data::<web::Data<AccessTable>>()
        .and_then(|t| t.get(req.method(), &pattern));
    match access {
        Some(Access::Open) => false,
        Some(_) => true,
        // A method the path does not have: the router answers 405.
        None => false,
    }
}

/// Refuses requests without a client certificate on every route that needs one.
pub async fn require_client_certificate(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(app) = req.app_data::<web::Data<App>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    if !app.settings.tls.require_client_cert_for_api
        || req.conn_data::<PeerIdentity>().is_some()
        || !needs_certificate(&req)
    {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let source = req.peer_addr().map(|a| a.ip());
    let endpoint = super::principal::endpoint_name(req.request());
    app.authentication_failed(source, None, &endpoint, "no client certificate")
        .await;
    let limited = source.and_then(|ip| app.limits.check_ip(ip).err());
    let token_endpoint = req.path() == TOKEN_PATH;
    let response = match (limited, token_endpoint) {
        (Some(wait), true) => super::oauth::rate_limited(wait.seconds()),
        (Some(wait), false) => ApiError::too_many_requests(wait.seconds()).error_response(),
        (None, true) => super::oauth::oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "a client certificate is required (mutual TLS)",
        ),
        (None, false) => ApiError::unauthorized(
            codes::NO_CERTIFICATE,
            "A client certificate is required: connect with mutual TLS.",
        )
        .error_response(),
    };
    Ok(req.into_response(response).map_into_right_body())
}
