//! The alert webhook (`alerts.webhook_url`): a small JSON event POSTed over HTTPS through the
//! delivery client (timeouts, no redirects, the gateway's client certificate and extra CAs),
//! with an `Idempotency-Key` that is the event's id on every attempt.

use anyhow::Context;

use super::retry::{AttemptError, parse_retry_after};
use crate::config::Settings;

/// Where alerts are POSTed.
pub struct AlertWebhook {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl AlertWebhook {
    /// The webhook of `settings`, if one is configured (its URL was checked at load: https).
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Option<AlertWebhook>> {
        let Some(url) = &settings.alerts.webhook_url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(url).context("alerts.webhook_url")?;
        if url.scheme() != "https" {
            anyhow::bail!("alerts.webhook_url must be https");
        }
        Ok(Some(AlertWebhook {
            client: super::rest::push_client(&settings.delivery)?,
            url,
        }))
    }

    /// POSTs one event; `Ok` with the status for 2xx.
    pub async fn send(&self, id: &str, body: &str) -> Result<u16, AttemptError> {
        let response = self
            .client
            .post(self.url.clone())
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", id)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    AttemptError::Timeout
                } else {
                    AttemptError::Connect(e.without_url().to_string())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        Err(AttemptError::Status {
            code: status.as_u16(),
            retry_after: response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc())),
        })
    }
}
