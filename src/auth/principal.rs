//! The authenticated caller. Every protected handler takes a `Principal`; the ODS code in the
//! token, never the request body, says who the caller is.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use super::scope::{Permission, Scope};
use crate::audit::{Actor, AuditEvent};
use crate::domain::{OdsCode, Role};
use crate::error::{ApiError, codes};
use crate::startup::AppState;

/// What the TLS layer learnt about the client certificate on this connection.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    /// Subject organisation (O) of the verified client certificate.
    pub organisation: Option<String>,
    pub common_name: Option<String>,
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    pub ods: OdsCode,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub break_glass: bool,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            client_id: self.client_id.clone(),
            ods: self.ods.to_string(),
        }
    }

    pub fn has_scope(&self, resource: &str, permission: Permission) -> bool {
        self.scopes.iter().any(|s| s.grants(resource, permission))
    }

    /// Checks role and scope, auditing a refusal.
    pub async fn authorize(
        &self,
        state: &AppState,
        endpoint: &str,
        roles: &[Role],
        resource: &str,
        permission: Permission,
    ) -> Result<(), ApiError> {
        let refusal = if !roles.contains(&self.role) {
            Some(ApiError::forbidden(
                codes::ROLE,
                format!("The role '{}' may not use {endpoint}.", self.role.as_str()),
            ))
        } else if !self.has_scope(resource, permission) {
            Some(ApiError::forbidden(
                codes::SCOPE,
                format!("The access token has no scope that allows {endpoint}."),
            ))
        } else {
            None
        };
        match refusal {
            None => Ok(()),
            Some(err) => {
                state
                    .audit
                    .record_or_log(AuditEvent::AccessDenied {
                        actor: self.actor(),
                        endpoint: endpoint.to_string(),
                        reason: err.audit_reason(),
                    })
                    .await;
                Err(err)
            }
        }
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn authenticate(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Principal, (Option<String>, ApiError)> {
    let token = bearer(req).ok_or_else(|| {
        (
            None,
            ApiError::unauthorized(codes::NO_TOKEN, "A bearer access token is required."),
        )
    })?;
    let claims = state
        .tokens
        .verify_access_token(&token, state.clock.now().unix_timestamp())
        .map_err(|reason| {
            (
                None,
                ApiError::unauthorized(
                    codes::BAD_TOKEN,
                    format!("The access token is not valid: {reason}."),
                ),
            )
        })?;
    let client_id = Some(claims.client_id.clone());
    let client = state.tokens.clients.get(&claims.client_id).ok_or_else(|| {
        (
            client_id.clone(),
            ApiError::unauthorized(codes::BAD_TOKEN, "The client is no longer registered."),
        )
    })?;
    let registration = &client.registration;
    if registration.ods.as_str() != claims.ods || registration.role != claims.role {
        return Err((
            client_id,
            ApiError::unauthorized(codes::BAD_TOKEN, "The client's registration has changed."),
        ));
    }
    if let Some(peer) = req.conn_data::<PeerIdentity>()
        && let Some(org) = &peer.organisation
        && org != registration.ods.as_str()
    {
        return Err((
            client_id,
            ApiError::unauthorized(
                codes::CERT_MISMATCH,
                "The client certificate's organisation does not match the access token.",
            ),
        ));
    }
    let scopes = claims
        .scope
        .split_whitespace()
        .filter_map(Scope::parse)
        .collect();
    Ok(Principal {
        client_id: claims.client_id,
        ods: registration.ods.clone(),
        role: registration.role,
        scopes,
        break_glass: registration.break_glass,
    })
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("application state missing")))?
                .clone();
            match authenticate(&state, &req) {
                Ok(principal) => {
                    req.extensions_mut().insert(principal.clone());
                    Ok(principal)
                }
                Err((client_id, err)) => {
                    state
                        .audit
                        .record_or_log(AuditEvent::AuthenticationFailed {
                            client_id,
                            endpoint: format!("{} {}", req.method(), req.path()),
                            reason: err.audit_reason(),
                        })
                        .await;
                    Err(err)
                }
            }
        })
    }
}
