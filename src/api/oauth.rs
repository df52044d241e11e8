//! `POST /oauth2/token`, `GET /.well-known/smart-configuration`, `GET /.well-known/jwks.json`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::app::{App, TokenRefusal};
use crate::auth::PeerIdentity;
use crate::auth::token::{TokenError, TokenRequest};

/// An RFC 6749 §5.2 error answer.
pub fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"error": error, "error_description": description}))
}

/// 429 with `Retry-After`, in RFC 6749 JSON: the source address made too many token requests
/// or failed authentications.
pub fn rate_limited(retry_after_secs: u64) -> HttpResponse {
    let mut response = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "temporarily_unavailable",
        &format!("too many requests from this address; try again in {retry_after_secs} s"),
    );
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&retry_after_secs.to_string())
    {
        response
            .headers_mut()
            .insert(actix_web::http::header::RETRY_AFTER, value);
    }
    response
}

#[tracing::instrument(name = "Issue token", skip_all)]
pub async fn issue_token(
    req: HttpRequest,
    payload: web::Payload,
    app: web::Data<App>,
) -> HttpResponse {
    // Before authentication, token requests are counted by source address.
    let source = req.peer_addr().map(|a| a.ip());
    if let Some(wait) = source.and_then(|ip| app.limits.check_ip(ip).err()) {
        return rate_limited(wait.seconds());
    }
    let body = match super::read_body(&req, payload, 64 * 1024).await {
        Ok(b) => b,
        Err(crate::error::ApiError::RequestTimeout(_)) => {
            return oauth_error(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request",
                "the request body did not arrive in time",
            );
        }
        Err(crate::error::ApiError::PayloadTooLarge(_)) => {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request too large",
            );
        }
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the request body could not be read",
            );
        }
    };
    let is_form = super::content_type(&req)
        .and_then(|c| c.split(';').next())
        .is_some_and(|c| {
            c.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let parsed: Result<TokenRequest, TokenError> = if is_form {
        read_form(&body)
    } else {
        Err(TokenError::InvalidRequest {
            description: "send application/x-www-form-urlencoded".into(),
        })
    };
    let peer = req.conn_data::<PeerIdentity>().cloned();
    match app.issue_token(parsed, peer.as_ref(), source).await {
        Ok(response) => HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(response),
        Err(TokenRefusal::Unavailable) => oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        ),
        Err(TokenRefusal::Refused(err)) => {
            let status = match err {
                TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            oauth_error(status, err.code(), &err.to_string())
        }
    }
}

pub async fn smart_configuration(app: web::Data<App>) -> HttpResponse {
    let base = &app.public_url;
    HttpResponse::Ok().json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/Bundle.c", "system/Bundle.r", "system/*.rs"],
        "capabilities": ["client-confidential-asymmetric"]
    }))
}

pub async fn jwks(app: web::Data<App>) -> HttpResponse {
    HttpResponse::Ok().json(app.tokens.gateway_key.jwks())
}

/// Reads the token request form. A parameter given twice is refused (RFC 6749 §3.2: parameters
/// must not be included more than once), so that no two readers see two requests.
pub fn read_form(body: &[u8]) -> Result<TokenRequest, TokenError> {
    let unreadable = || TokenError::InvalidRequest {
        description: "the form body is unreadable".into(),
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| unreadable())?;
    let mut seen = std::collections::HashSet::new();
    if let Some((name, _)) = pairs.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(TokenError::InvalidRequest {
            description: format!(
                "the parameter {} is given more than once",
                name.chars().take(40).collect::<String>()
            ),
        });
    }
    serde_urlencoded::from_bytes(body).map_err(|_| unreadable())
}
