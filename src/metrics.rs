//! Prometheus metrics (`GET /metrics`): intake by outcome and its latency, delivery attempts by
//! result and their latency, endpoint redirects (an alert: an existing recipient endpoint was
//! pointed elsewhere), and, read from the store at scrape time, deliveries by state and the
//! number at risk of missing a release date.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

/// An escalation state (`held`, `failed`, `dead-letter`, `undelivered-near-release`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    pub state: String,
}

/// The escalation states, labelled in the alert metrics (`delivery::escalation::STATES`).
pub const ALERT_STATES: &[&str] = &[
    "held",
    "failed",
    "dead-letter",
    "undelivered-near-release",
    "unacknowledged",
    "recently-deceased",
];

/// How an alert webhook attempt ended.
pub const WEBHOOK_OUTCOMES: &[&str] = &["sent", "retrying", "failed"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub status: String,
    pub business_status: String,
}

/// Requests the HTTP layer refused before they reached the gateway (a head too large, 431;
/// malformed framing such as a duplicate or negative Content-Length, 400; a slow head, 408).
/// They carry no body and are not logged at ERROR (`main` filters actix-http's dispatcher
/// target out of the log); they are counted here.
static HTTP_REFUSALS: std::sync::LazyLock<Counter> = std::sync::LazyLock::new(Counter::default);

/// A tracing layer that counts the HTTP layer's own refusals (errors logged by actix-http's
/// HTTP/1 dispatcher) into [`HTTP_REFUSALS`].
pub struct HttpRefusals;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HttpRefusals {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        if meta.target().starts_with("actix_http::h1") && *meta.level() == tracing::Level::ERROR {
            HTTP_REFUSALS.inc();
        }
    }
}

/// How many requests the HTTP layer has refused so far.
pub fn http_refusals() -> u64 {
    HTTP_REFUSALS.get()
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub intake: Family<OutcomeLabel, Counter>,
    pub intake_seconds: Histogram,
    pub attempts: Family<OutcomeLabel, Counter>,
    pub attempt_seconds: Histogram,
    pub deliveries: Family<StateLabel, Gauge>,
    pub at_risk: Gauge,
    /// Existing endpoints whose URL or token URL was changed (`endpoint-redirected`).
    pub endpoint_redirects: Counter,
    /// Deliveries with an open escalation, by state (read from the store at scrape time).
    pub escalated: Family<AlertLabel, Gauge>,
    /// Alerts raised by this instance, by state.
    pub alerts: Family<AlertLabel, Counter>,
    /// Alert webhook attempts, by outcome.
    pub webhook_attempts: Family<OutcomeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("throughcare");
        let intake = Family::<OutcomeLabel, Counter>::default();
        let intake_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        let attempts = Family::<OutcomeLabel, Counter>::default();
        let attempt_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let deliveries = Family::<StateLabel, Gauge>::default();
        let at_risk = Gauge::default();
        let endpoint_redirects = Counter::default();
        let escalated = Family::<AlertLabel, Gauge>::default();
        let alerts = Family::<AlertLabel, Counter>::default();
        let webhook_attempts = Family::<OutcomeLabel, Counter>::default();
        // Every label exists from the start, so that alert rules see zeros, not absent series.
        for state in ALERT_STATES {
            let label = AlertLabel {
                state: state.to_string(),
            };
            drop(escalated.get_or_create(&label));
            drop(alerts.get_or_create(&label));
        }
        for outcome in WEBHOOK_OUTCOMES {
            drop(webhook_attempts.get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            }));
        }
        registry.register(
            "http_refusals",
            "Requests refused by the HTTP layer before routing (431, malformed framing, slow heads)",
            HTTP_REFUSALS.clone(),
        );
        registry.register(
            "intake_documents",
            "Documents offered at intake, by outcome",
            intake.clone(),
        );
        registry.register(
            "intake_duration_seconds",
            "Intake latency",
            intake_seconds.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by result",
            attempts.clone(),
        );
        registry.register(
            "delivery_attempt_duration_seconds",
            "Delivery attempt latency",
            attempt_seconds.clone(),
        );
        registry.register("deliveries", "Deliveries by state", deliveries.clone());
        registry.register(
            "deliveries_at_risk",
            "Open deliveries at risk of missing the release date",
            at_risk.clone(),
        );
        registry.register(
            "endpoint_redirects",
            "Existing recipient endpoints pointed to another URL or token URL (alert)",
            endpoint_redirects.clone(),
        );
        registry.register(
            "deliveries_escalated",
            "Deliveries with an open escalation (held, failed, dead-letter, undelivered near release), by state",
            escalated.clone(),
        );
        registry.register(
            "delivery_alerts",
            "Escalation alerts raised (Communication to the sending prison, webhook, audit), by state",
            alerts.clone(),
        );
        registry.register(
            "alert_webhook_attempts",
            "Alert webhook attempts, by outcome (sent, retrying, failed)",
            webhook_attempts.clone(),
        );
        Metrics {
            registry,
            escalated,
            alerts,
            webhook_attempts,
            intake,
            intake_seconds,
            attempts,
            attempt_seconds,
            deliveries,
            at_risk,
            endpoint_redirects,
        }
    }

    pub fn count_intake(&self, outcome: &str, seconds: f64) {
        self.intake
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.intake_seconds.observe(seconds);
    }

    pub fn count_attempt(&self, outcome: &str, seconds: f64) {
        self.attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
        self.attempt_seconds.observe(seconds);
    }

    pub fn count_alert(&self, state: &str) {
        self.alerts
            .get_or_create(&AlertLabel {
                state: state.to_string(),
            })
            .inc();
    }

    pub fn count_webhook(&self, outcome: &str) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod refusal_tests {
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn the_http_layers_own_refusals_are_counted() {
        let subscriber = tracing_subscriber::registry().with(super::HttpRefusals);
        let before = super::http_refusals();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: malformed");
            tracing::error!(target: "throughcare::other", "not counted");
            tracing::warn!(target: "actix_http::h1::dispatcher", "not an error");
        });
        assert_eq!(super::http_refusals(), before + 1);
    }
}
