//! The `Principal` extractor: authenticates the bearer token (bound to the connection's client
//! certificate: its organisation, and its thumbprint when the token carries `cnf`), takes one
//! request from the client's rate-limit bucket, then checks the access the route table declares
//! for the matched route. Failures are audited here (authentication failed, sampled; access
//! denied); a failed authentication also counts against the source address's bucket. A
//! principal that passes is kept in the request's extensions, where the rejection auditor finds
//! it. Last, the query string is checked against the parameters the route table declares for the
//! route ([`super::query`]), and kept there too for the handler ([`super::query::params`]).

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use super::routes::{Access, AccessTable};
use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::token::TokenService;
use crate::auth::{PeerIdentity, Permission, Principal, Scope};
use crate::domain::Role;
use crate::error::{ApiError, codes};

/// The bearer token of the `Authorization` header, if it carries one.
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

/// `"METHOD /route/{pattern}"`: how audit entries and messages name the route.
pub fn endpoint_name(req: &HttpRequest) -> String {
    format!(
        "{} {}",
        req.method(),
        req.match_pattern()
            .unwrap_or_else(|| req.path().to_string())
    )
}

async fn extract(req: HttpRequest) -> Result<Principal, ApiError> {
    let app = req
        .app_data::<web::Data<App>>()
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("application state missing")))?
        .clone();
    // One request, one credential: a second Authorization header could be read by another
    // component than the one that checked the first.
    if req
        .headers()
        .get_all(actix_web::http::header::AUTHORIZATION)
        .count()
        > 1
    {
        return Err(ApiError::bad_request(
            crate::error::codes::DUPLICATE_HEADER,
            "The Authorization header appears more than once; send exactly one.",
        ));
    }
    let peer = req.conn_data::<PeerIdentity>().cloned();
    let source = req.peer_addr().map(|a| a.ip());
    let now = app.clock.now().unix_timestamp();
    let principal = match authenticate(&app.tokens, bearer(&req), peer.as_ref(), now) {
        Ok(p) => p,
        Err(failure) => {
            app.authentication_failed(
                source,
                failure.client_id.as_deref(),
                &endpoint_name(&req),
                &failure.error.audit_reason(),
            )
            .await;
            // Failed authentications count against the source address: past its burst the
            // caller is told to slow down.
            if let Some(wait) = source.and_then(|ip| app.limits.check_ip(ip).err()) {
                return Err(ApiError::too_many_requests(wait.seconds()));
            }
            return Err(failure.error);
        }
    };
    // After authentication, every client has its own bucket (organisations share addresses).
    if let Err(wait) = app.limits.check_client(&principal.client_id) {
        return Err(ApiError::too_many_requests(wait.seconds()));
    }
    let endpoint = endpoint_name(&req);
    let access = req
        .app_data::<web::Data<AccessTable>>()
        .and_then(|t| t.get(req.method(), &req.match_pattern().unwrap_or_default()));
    let checked = match access {
        Some(Access::Protected {
            roles,
            resource,
            permission,
        }) => check_access(&principal, &endpoint, roles, resource, permission),
        Some(Access::Authenticated | Access::Public | Access::Open) => Ok(()),
        // A route missing from the table is refused rather than left open.
        None => Err(ApiError::forbidden(
            crate::error::codes::ROLE,
            format!("{endpoint} declares no access rule."),
        )),
    };
    if let Err(err) = checked {
        app.audit
            .record_or_log(AuditEvent::AccessDenied {
                actor: principal.actor(),
                endpoint,
                reason: err.audit_reason(),
            })
            .await;
        return Err(err);
    }
    req.extensions_mut().insert(principal.clone());
    // The query string the route declares, checked once here (refusals are audited as input
    // rejected, with the principal now known).
    let declared = req
        .app_data::<web::Data<AccessTable>>()
        .map(|t| t.query(req.method(), &req.match_pattern().unwrap_or_default()))
        .unwrap_or_default();
    let params = super::query::check(req.query_string(), declared)?;
    req.extensions_mut().insert(params);
    Ok(principal)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(extract(req.clone()))
    }
}

/// Checks role and scope for `endpoint` (`"METHOD /path"`).
fn check_access(
    principal: &Principal,
    endpoint: &str,
    roles: &[Role],
    resource: &str,
    permission: Permission,
) -> Result<(), ApiError> {
    if !roles.contains(&principal.role) {
        Err(ApiError::forbidden(
            codes::ROLE,
            format!(
                "The role '{}' may not use {endpoint}.",
                principal.role.as_str()
            ),
        ))
    } else if !principal.has_scope(resource, permission) {
        Err(ApiError::forbidden(
            codes::SCOPE,
            format!("The access token has no scope that allows {endpoint}."),
        ))
    } else {
        Ok(())
    }
}

/// Why authentication failed, with the client the token named when it named one.
#[derive(Debug)]
struct AuthFailure {
    client_id: Option<String>,
    error: ApiError,
}

/// Authenticates a bearer token presented over a connection whose client certificate (if any)
/// names `peer`, at `now` (unix seconds).
fn authenticate(
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
    // RFC 8705: a token issued over a certificate is good only over that certificate.
    if let Some(cnf) = &claims.cnf
        && peer.and_then(|p| p.thumbprint.as_deref()) != Some(cnf.x5t_s256.as_str())
    {
        return Err(fail(
            client_id,
            ApiError::unauthorized(
                codes::TOKEN_BINDING,
                "The access token is bound to another client certificate than this connection's.",
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
