//! `App`: what the use cases need (store, audit, agreements, translator, validator, clock,
//! directory, transports), with no web-framework types. `startup` builds it and hands it to the
//! edge (`api/`, the CLI, the demo); the use cases (`intake`, `recipient`, `pull`, `consents`,
//! `delivery`, `admin`) take `&App`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::Audit;
use crate::auth::PeerIdentity;
use crate::auth::limits::{FailureNote, FailureSampler, MAX_UNVERIFIED_CHARS, RateLimits, bounded};
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
    /// Registered clients and the gateway's token signing key.
    pub tokens: TokenService,
    /// The key that signs audit checkpoints, and nothing else (not the token signing key).
    pub audit_key: crate::auth::keys::GatewayKey,
    /// The CapabilityStatement, rendered once from the route table.
    pub capability: String,
    /// Agreements in force and sensitivity labels.
    pub sharing: Sharing,
    /// Wakes the delivery workers when a delivery becomes due.
    pub delivery_wakeup: Arc<tokio::sync::Notify>,
    /// Wakes the alert webhook worker when an alert is queued.
    pub alert_wakeup: Arc<tokio::sync::Notify>,
    /// The delivery transports, by endpoint kind.
    pub transports: Transports,
    /// Profiles compiled at start-up.
    pub validator: Arc<Validator>,
    pub metrics: Metrics,
    /// Mappings compiled at start-up.
    pub translator: Arc<Translator>,
    /// Medicines that must not be interrupted at release (`mappings/medicines/`).
    pub medicines: crate::medicines::ContinuityCritical,
    /// Which elements of a copy are clinical content, per target profile set
    /// (`mappings/clinical-content/`): the rule for holding a copy that fails its profile.
    pub clinical: crate::validate::clinical::ClinicalContent,
    /// Rate limits: per source address before authentication, per client after it.
    pub limits: RateLimits,
    /// Failed authentications, sampled into the audit log.
    pub failed_authentications: FailureSampler,
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
    /// `peer` is the client certificate of the connection (the token is bound to it) and
    /// `source` its address (failures are sampled by client or address).
    pub async fn issue_token(
        &self,
        request: Result<crate::auth::token::TokenRequest, crate::auth::token::TokenError>,
        peer: Option<&PeerIdentity>,
        source: Option<IpAddr>,
    ) -> Result<crate::auth::token::TokenResponse, TokenRefusal> {
        use crate::audit::{Actor, AuditEvent};
        use crate::auth::token::TokenError;
        let now = self.clock.now().unix_timestamp();
        let outcome = match request {
            Ok(form) => {
                self.tokens
                    .exchange(self.store.as_ref(), &form, peer, now)
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
                self.authentication_failed(
                    source,
                    err.client_id(),
                    "POST /oauth2/token",
                    &err.to_string(),
                )
                .await;
                Err(TokenRefusal::Refused(err))
            }
        }
    }
}

impl App {
    /// Counts a failed authentication and audits it, sampled: per registered client (or, when
    /// the request named none, per source address) the first failure of an interval is audited
    /// at once and the rest are folded into the count of the next entry. Text taken from the
    /// request (a client id, a reason quoting it) is cut short before it is stored.
    pub async fn authentication_failed(
        &self,
        source: Option<IpAddr>,
        client_id: Option<&str>,
        endpoint: &str,
        reason: &str,
    ) {
        let registered = client_id.filter(|id| self.tokens.clients.get(id).is_some());
        let key = match (registered, source) {
            (Some(id), _) => format!("client:{id}"),
            (None, Some(ip)) => format!("ip:{ip}"),
            (None, None) => "unknown".to_string(),
        };
        let note = FailureNote {
            client_id: client_id.map(|c| bounded(c, MAX_UNVERIFIED_CHARS)),
            endpoint: bounded(endpoint, MAX_UNVERIFIED_CHARS),
            // Reasons are the gateway's own words around at most one quoted request value.
            reason: bounded(reason, 2 * MAX_UNVERIFIED_CHARS),
            source: source.map(|ip| ip.to_string()),
        };
        let now = self.clock.now().unix_timestamp();
        if let Some(sampled) = self.failed_authentications.note(&key, note, now) {
            self.audit.record_or_log(failed_event(sampled)).await;
        }
    }

    /// Audits the failed authentications still folded whose interval has ended (all of them
    /// when `all`, at shutdown), and forgets idle rate-limit buckets.
    pub async fn flush_failed_authentications(&self, all: bool) {
        let now = self.clock.now().unix_timestamp();
        for sampled in self.failed_authentications.due(now, all) {
            self.audit.record_or_log(failed_event(sampled)).await;
        }
        self.limits.forget_idle();
    }
}

fn failed_event(sampled: crate::auth::limits::SampledFailure) -> crate::audit::AuditEvent {
    let FailureNote {
        client_id,
        endpoint,
        reason,
        source,
    } = sampled.note;
    crate::audit::AuditEvent::AuthenticationFailed {
        client_id,
        endpoint,
        reason,
        source,
        failures: sampled.failures,
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
        let escalated = self.store.escalation_counts().await?;
        for state in crate::metrics::ALERT_STATES {
            let n = escalated
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.metrics
                .escalated
                .get_or_create(&crate::metrics::AlertLabel {
                    state: state.to_string(),
                })
                .set(n);
        }
        Ok(self.metrics.render())
    }
}
