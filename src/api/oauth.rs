//! `POST /oauth2/token`, `GET /.well-known/smart-configuration`, `GET /.well-known/jwks.json`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::audit::{Actor, AuditEvent};
use crate::auth::PeerIdentity;
use crate::auth::token::{TokenError, TokenRequest};
use crate::startup::AppState;

fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"error": error, "error_description": description}))
}

#[tracing::instrument(name = "Issue token", skip_all)]
pub async fn issue_token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let endpoint = "POST /oauth2/token";
    let body = match super::read_body(&req, payload, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return oauth_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request",
                "request too large",
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
        serde_urlencoded::from_bytes(&body).map_err(|_| TokenError::InvalidRequest {
            description: "the form body is unreadable".into(),
        })
    } else {
        Err(TokenError::InvalidRequest {
            description: "send application/x-www-form-urlencoded".into(),
        })
    };
    let peer_org = req
        .conn_data::<PeerIdentity>()
        .and_then(|p| p.organisation.clone());
    let now = state.clock.now().unix_timestamp();
    let outcome = match parsed {
        Ok(form) => {
            state
                .tokens
                .exchange(state.store.as_ref(), &form, peer_org.as_deref(), now)
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok((response, claims)) => {
            let event = AuditEvent::TokenIssued {
                actor: Actor {
                    client_id: claims.client_id.clone(),
                    ods: claims.ods.clone(),
                },
                scopes: claims.scope.clone(),
            };
            if let Err(err) = state.audit.record(event).await {
                tracing::error!(error = %err, "Could not audit a token issue; refusing it.");
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again",
                );
            }
            HttpResponse::Ok()
                .insert_header(("Cache-Control", "no-store"))
                .json(response)
        }
        Err(TokenError::Store(err)) => {
            tracing::error!(error = %err, "Token endpoint store failure.");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            )
        }
        Err(err) => {
            state
                .audit
                .record_or_log(AuditEvent::AuthenticationFailed {
                    client_id: err.client_id().map(str::to_string),
                    endpoint: endpoint.into(),
                    reason: err.to_string(),
                })
                .await;
            let status = match err {
                TokenError::InvalidClient { .. } => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            oauth_error(status, err.code(), &err.to_string())
        }
    }
}

pub async fn smart_configuration(state: web::Data<AppState>) -> HttpResponse {
    let base = &state.public_url;
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

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(state.tokens.gateway_key.jwks())
}
