//! The `Principal` extractor: authenticates the bearer token (bound to the connection's client
//! certificate organisation), then checks the access the route table declares for the matched
//! route. Failures are audited here (authentication failed, access denied); a principal that
//! passes is kept in the request's extensions, where the rejection auditor finds it.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpMessage, HttpRequest, dev::Payload, web};

use super::routes::{Access, AccessTable};
use crate::app::App;
use crate::audit::AuditEvent;
use crate::auth::principal::authenticate;
use crate::auth::{PeerIdentity, Principal};
use crate::error::ApiError;

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
    let peer = req.conn_data::<PeerIdentity>().cloned();
    let now = app.clock.now().unix_timestamp();
    let principal = match authenticate(&app.tokens, bearer(&req), peer.as_ref(), now) {
        Ok(p) => p,
        Err(failure) => {
            app.audit
                .record_or_log(AuditEvent::AuthenticationFailed {
                    client_id: failure.client_id,
                    endpoint: format!("{} {}", req.method(), req.path()),
                    reason: failure.error.audit_reason(),
                })
                .await;
            return Err(failure.error);
        }
    };
    let endpoint = endpoint_name(&req);
    let access = req
        .app_data::<web::Data<AccessTable>>()
        .and_then(|t| t.get(req.method(), &req.match_pattern().unwrap_or_default()));
    let checked = match access {
        Some(Access::Protected {
            roles,
            resource,
            permission,
        }) => principal.check_access(&endpoint, roles, resource, permission),
        Some(Access::Authenticated) | Some(Access::Public) => Ok(()),
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
    Ok(principal)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(extract(req.clone()))
    }
}
