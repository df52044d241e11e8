//! `App`: what the use cases need (store, audit, agreements, translator, validator, clock,
//! directory, transports), with no web-framework types. `startup` builds it and hands it to the
//! edge (`api/`, the CLI, the demo); the use cases (`intake`, `recipient`, `pull`, `consents`,
//! `delivery`, `admin`) take `&App`.

use std::sync::Arc;

use crate::audit::Audit;
use crate::auth::token::TokenService;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::directory::PrisonRegister;
use crate::domain::{OdsCode, Role};
use crate::metrics::Metrics;
use crate::sharing::Sharing;
use crate::store::Store;
use crate::translate::Translator;
use crate::transport::Transports;
use crate::validate::Validator;

/// The gateway's context, shared by every use case.
pub struct App {
    pub settings: Settings,
    /// The base URL clients reach the gateway at (Locations, Task focus, token audience).
    pub public_url: String,
    pub store: Arc<dyn Store>,
    pub audit: Audit,
    pub clock: SharedClock,
    /// Registered clients and the gateway's signing key.
    pub tokens: TokenService,
    /// The CapabilityStatement, rendered once from the route table.
    pub capability: String,
    /// Agreements in force and sensitivity labels.
    pub sharing: Sharing,
    /// Wakes the delivery workers when a delivery becomes due.
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
    /// The delivery transports, by endpoint kind.
    pub transports: Transports,
    /// Profiles compiled at start-up.
    pub validator: Arc<Validator>,
    pub metrics: Metrics,
    /// Mappings compiled at start-up.
    pub translator: Arc<Translator>,
    /// The prison slice of the organisation directory (the MoJ prison register), loaded at
    /// start-up.
    pub prisons: PrisonRegister,
}

/// The organisation directory: registered clients, the prison register, the ICBs by postcode.
/// (Endpoints are in the store; `recipient::Subject` adds them for the organisations a document
/// names.)
impl crate::routing::Directory for App {
    fn role_of(&self, ods: &OdsCode) -> Option<Role> {
        self.settings
            .clients
            .iter()
            .find(|c| &c.ods == ods)
            .map(|c| c.role)
            .or_else(|| {
                self.prisons
                    .is_prison_healthcare(ods)
                    .then_some(Role::Prison)
            })
    }

    fn is_prison_healthcare(&self, ods: &OdsCode) -> bool {
        self.prisons.is_prison_healthcare(ods)
    }

    fn icb_for_postcode(&self, postcode: Option<&str>) -> Option<OdsCode> {
        crate::routing::icb_for_postcode(
            &self.settings.policy.icb_by_postcode,
            self.settings.policy.default_icb.as_ref(),
            postcode,
        )
    }
}

impl App {
    /// The current time as RFC 3339, by the gateway's clock.
    pub fn now_stamp(&self) -> String {
        crate::clock::rfc3339(self.clock.now())
    }

    /// Whether the store answers (for readiness).
    pub async fn ready(&self) -> Result<(), crate::store::StoreError> {
        self.store.ping().await
    }
}

/// Why a token request failed, as the token endpoint answers it (RFC 6749 JSON errors).
#[derive(Debug)]
pub enum TokenRefusal {
    /// The request or the client was refused (audited as a failed authentication).
    Refused(crate::auth::token::TokenError),
    /// The store or the audit log could not be written: try again.
    Unavailable,
}

impl App {
    /// The SMART Backend Services token exchange, audited: a token is issued only when its issue
    /// is recorded.
    pub async fn issue_token(
        &self,
        request: Result<crate::auth::token::TokenRequest, crate::auth::token::TokenError>,
        peer_organisation: Option<&str>,
    ) -> Result<crate::auth::token::TokenResponse, TokenRefusal> {
        use crate::audit::{Actor, AuditEvent};
        use crate::auth::token::TokenError;
        let now = self.clock.now().unix_timestamp();
        let outcome = match request {
            Ok(form) => {
                self.tokens
                    .exchange(self.store.as_ref(), &form, peer_organisation, now)
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
                if let Err(err) = self.audit.record(event).await {
                    tracing::error!(error = %err, "Could not audit a token issue; refusing it.");
                    return Err(TokenRefusal::Unavailable);
                }
                Ok(response)
            }
            Err(TokenError::Store(err)) => {
                tracing::error!(error = %err, "Token endpoint store failure.");
                Err(TokenRefusal::Unavailable)
            }
            Err(err) => {
                self.audit
                    .record_or_log(AuditEvent::AuthenticationFailed {
                        client_id: err.client_id().map(str::to_string),
                        endpoint: "POST /oauth2/token".into(),
                        reason: err.to_string(),
                    })
                    .await;
                Err(TokenRefusal::Refused(err))
            }
        }
    }
}

impl App {
    /// The Prometheus exposition, with the delivery gauges read from the store now.
    pub async fn metrics_text(&self) -> Result<String, crate::store::StoreError> {
        let (states, at_risk) = self.store.delivery_counts().await?;
        self.metrics.deliveries.clear();
        for (status, business_status, n) in states {
            self.metrics
                .deliveries
                .get_or_create(&crate::metrics::StateLabel {
                    status,
                    business_status,
                })
                .set(n);
        }
        self.metrics.at_risk.set(at_risk);
        Ok(self.metrics.render())
    }
}
