//! The authenticated caller. Every protected handler takes a `Principal`; the ODS code in the
//! token, never the request body, says who the caller is. The edge (`api::principal`) extracts
//! it from the request; what it means to be authenticated and authorised is decided here.

use super::scope::{Permission, Scope};
use super::token::TokenService;
use crate::audit::Actor;
use crate::domain::{OdsCode, Role};
use crate::error::{ApiError, codes};

/// What the TLS layer learnt about the client certificate on this connection.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    /// Subject organisation (O) of the verified client certificate.
    pub organisation: Option<String>,
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

    /// Checks role and scope for `endpoint` (`"METHOD /path"`).
    pub fn check_access(
        &self,
        endpoint: &str,
        roles: &[Role],
        resource: &str,
        permission: Permission,
    ) -> Result<(), ApiError> {
        if !roles.contains(&self.role) {
            Err(ApiError::forbidden(
                codes::ROLE,
                format!("The role '{}' may not use {endpoint}.", self.role.as_str()),
            ))
        } else if !self.has_scope(resource, permission) {
            Err(ApiError::forbidden(
                codes::SCOPE,
                format!("The access token has no scope that allows {endpoint}."),
            ))
        } else {
            Ok(())
        }
    }
}

/// Why authentication failed, with the client the token named when it named one.
#[derive(Debug)]
pub struct AuthFailure {
    pub client_id: Option<String>,
    pub error: ApiError,
}

/// Authenticates a bearer token presented over a connection whose client certificate (if any)
/// names `peer`, at `now` (unix seconds).
pub fn authenticate(
    tokens: &TokenService,
    token: Option<String>,
    peer: Option<&PeerIdentity>,
    now: i64,
) -> Result<Principal, AuthFailure> {
    let fail = |client_id: Option<String>, error| AuthFailure { client_id, error };
    let token = token.ok_or_else(|| {
        fail(
            None,
            ApiError::unauthorized(codes::NO_TOKEN, "A bearer access token is required."),
        )
    })?;
    let claims = tokens.verify_access_token(&token, now).map_err(|reason| {
        fail(
            None,
            ApiError::unauthorized(
                codes::BAD_TOKEN,
                format!("The access token is not valid: {reason}."),
            ),
        )
    })?;
    let client_id = Some(claims.client_id.clone());
    let client = tokens.clients.get(&claims.client_id).ok_or_else(|| {
        fail(
            client_id.clone(),
            ApiError::unauthorized(codes::BAD_TOKEN, "The client is no longer registered."),
        )
    })?;
    let registration = &client.registration;
    if registration.ods.as_str() != claims.ods || registration.role != claims.role {
        return Err(fail(
            client_id,
            ApiError::unauthorized(codes::BAD_TOKEN, "The client's registration has changed."),
        ));
    }
    if let Some(org) = peer.and_then(|p| p.organisation.as_ref())
        && org != registration.ods.as_str()
    {
        return Err(fail(
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
