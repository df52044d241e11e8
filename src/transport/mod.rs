//! Delivery transports: how a prepared copy reaches a recipient. The delivery worker makes the
//! copy (`recipient::copy_for`), picks the transport by the endpoint's [`EndpointKind`], and maps
//! the typed [`DeliveryOutcome`] it gets back onto the Task, the retry schedule and the audit
//! log. A transport knows nothing of policy, Tasks or backoff: it sends bytes and says how that
//! ended.
//!
//! - [`endpoint`]: the endpoint directory, typed (kind, URL, profile, auth);
//! - [`rest`]: `fhir-rest`, a POST of the copy with an idempotency key;
//! - [`retry`]: which failures are worth another attempt, and when;
//! - [`mesh`]: the MESH API client (for GP practices; not yet a `Transport`).
//!
//! Adding a transport (MESH for GP practices) is one new file implementing [`Transport`], a
//! variant of [`EndpointKind`] and a field of [`Transports`].

pub mod endpoint;
pub mod mesh;
pub mod rest;
pub mod retry;
pub mod webhook;

use std::time::Duration;

use async_trait::async_trait;

use crate::auth::keys::GatewayKey;
use crate::clock::SharedClock;
use crate::translate::Target;
use endpoint::{Endpoint, EndpointKind};

/// An outbound HTTPS client as every transport builds it: timeouts always (connect at most
/// 10 s), no redirects, extra CA certificates (PEM bundle) and a client certificate with its key
/// for mutual TLS when configured. `what` names it in errors.
pub fn outbound_client(
    timeout_secs: u64,
    ca: Option<&std::path::Path>,
    client_cert: Option<(&std::path::Path, &std::path::Path)>,
    what: &str,
) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(timeout_secs))
        .connect_timeout(Duration::from_secs(timeout_secs.min(10)))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = client_cert {
        let mut identity =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        identity.extend(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?);
        builder = builder.identity(reqwest::Identity::from_pem(&identity)?);
    }
    builder
        .build()
        .with_context(|| format!("building the {what}"))
}

/// What a transport may use of the gateway while sending: its clock and its signing key (for
/// the assertions it presents to recipients' token endpoints).
pub struct SendContext<'a> {
    pub clock: &'a SharedClock,
    pub gateway_key: &'a GatewayKey,
}

/// A recipient's copy, ready to send.
#[derive(Debug)]
pub struct PreparedCopy<'a> {
    /// The delivery's id: the stable idempotency key of every attempt.
    pub delivery_id: &'a str,
    /// The document's id: the correlation id.
    pub document_id: &'a str,
    /// The profile the copy is in.
    pub target: Target,
    /// The serialised copy: exactly these bytes leave the gateway.
    pub body: Vec<u8>,
    /// MESH: the mailbox the copy goes to, when the delivery stage resolved it (the ITK3
    /// message names its receiver); `None`: the transport resolves it.
    pub to_mailbox: Option<&'a str>,
}

/// How one send ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The recipient has the copy.
    Delivered { status_code: Option<u16> },
    /// Worth another attempt, not before `after` when the recipient said so.
    RetryAfter {
        reason: String,
        status_code: Option<u16>,
        after: Option<Duration>,
    },
    /// No retry will mend it.
    Permanent {
        code: &'static str,
        reason: String,
        status_code: Option<u16>,
    },
    /// Sent; the recipient's acknowledgement will complete (or fail) the delivery.
    AwaitingAcknowledgement { reference: String },
}

impl DeliveryOutcome {
    /// The label counted in the `throughcare_delivery_attempts_total` metric.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered { .. } => "delivered",
            DeliveryOutcome::RetryAfter { .. } => "retryable-error",
            DeliveryOutcome::Permanent { .. } => "permanent-error",
            DeliveryOutcome::AwaitingAcknowledgement { .. } => "awaiting-acknowledgement",
        }
    }
}

/// Sends prepared copies to one kind of endpoint.
#[async_trait]
pub trait Transport: Send + Sync {
    fn kind(&self) -> EndpointKind;

    async fn send(
        &self,
        ctx: &SendContext<'_>,
        endpoint: &Endpoint,
        copy: &PreparedCopy<'_>,
    ) -> DeliveryOutcome;
}

/// The transports this gateway runs, one per endpoint kind.
pub struct Transports {
    pub fhir_rest: rest::FhirRest,
    /// MESH, when `[mesh]` is configured.
    pub mesh: Option<mesh::transport::MeshTransport>,
    /// The alert webhook, when `alerts.webhook_url` is set.
    pub alert_webhook: Option<webhook::AlertWebhook>,
}

impl Transports {
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Transports> {
        Ok(Transports {
            fhir_rest: rest::FhirRest::new(&settings.delivery)?,
            mesh: match &settings.mesh {
                Some(m) => Some(mesh::transport::MeshTransport {
                    client: mesh::MeshClient::from_settings(m)?,
                }),
                None => None,
            },
            alert_webhook: webhook::AlertWebhook::from_settings(settings)?,
        })
    }

    pub fn for_kind(&self, kind: EndpointKind) -> &dyn Transport {
        match kind {
            EndpointKind::FhirRest => &self.fhir_rest,
            EndpointKind::Mesh => match &self.mesh {
                Some(m) => m,
                None => &mesh::transport::MeshNotConfigured,
            },
        }
    }
}
