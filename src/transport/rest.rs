//! The `fhir-rest` transport: the copy is POSTed to the endpoint's URL as FHIR JSON with a
//! stable `Idempotency-Key` (the delivery id), over mutual TLS with the gateway's certificate,
//! and a bearer token when the endpoint asks for one (static, or fetched from its token URL with
//! a gateway-signed assertion and cached until shortly before it expires).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::endpoint::{Endpoint, EndpointAuth, EndpointKind};
use super::retry::{AttemptError, parse_retry_after};
use super::{DeliveryOutcome, PreparedCopy, SendContext, Transport};
use crate::codes;
use crate::config::DeliverySettings;

/// The FHIR REST push.
pub struct FhirRest {
    client: reqwest::Client,
    allow_loopback_http: bool,
    /// Access tokens obtained from recipients' token URLs, with their expiry (unix seconds).
    tokens: Mutex<HashMap<String, (String, i64)>>,
}

/// Builds the HTTP client for pushes: timeouts always, no redirects, the gateway's certificate
/// for mutual TLS and extra CAs when configured.
pub fn push_client(settings: &DeliverySettings) -> anyhow::Result<reqwest::Client> {
    super::outbound_client(
        settings.timeout_secs,
        settings.ca.as_deref(),
        settings
            .client_cert
            .as_deref()
            .zip(settings.client_key.as_deref()),
        "push client",
    )
}

impl FhirRest {
    pub fn new(settings: &DeliverySettings) -> anyhow::Result<FhirRest> {
        Ok(FhirRest {
            client: push_client(settings)?,
            allow_loopback_http: settings.allow_loopback_http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn check_url(&self, url: &str) -> Result<reqwest::Url, AttemptError> {
        super::endpoint::check_url(url, self.allow_loopback_http)
            .map_err(|e| AttemptError::Permanent(format!("bad endpoint URL: {e}")))
    }

    async fn push(
        &self,
        ctx: &SendContext<'_>,
        endpoint: &Endpoint,
        copy: &PreparedCopy<'_>,
    ) -> Result<u16, AttemptError> {
        let url = self.check_url(&endpoint.url)?;
        let mut request = self
            .client
            .post(url)
            .header("Content-Type", "application/fhir+json")
            .header("Idempotency-Key", copy.delivery_id)
            .header("X-Request-ID", uuid::Uuid::new_v4().to_string())
            .header("X-Correlation-ID", copy.document_id)
            .body(copy.body.clone());
        match &endpoint.auth {
            EndpointAuth::None => {}
            EndpointAuth::Bearer { bearer_token } => request = request.bearer_auth(bearer_token),
            EndpointAuth::TokenUrl {
                token_url,
                client_id,
            } => {
                let token = self.fetch_token(ctx, token_url, client_id).await?;
                request = request.bearer_auth(token);
            }
        }
        let response = request.send().await.map_err(send_error)?;
        let code = response.status().as_u16();
        if response.status().is_success() {
            return Ok(code);
        }
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, ctx.clock.now()));
        Err(AttemptError::Status { code, retry_after })
    }

    /// Gets an access token from a recipient's token URL (SMART Backend Services, the gateway
    /// as the client), cached until shortly before it expires.
    async fn fetch_token(
        &self,
        ctx: &SendContext<'_>,
        token_url: &str,
        client_id: &str,
    ) -> Result<String, AttemptError> {
        let key = format!("{client_id} {token_url}");
        let now = ctx.clock.now().unix_timestamp();
        if let Ok(cache) = self.tokens.lock()
            && let Some((token, expires)) = cache.get(&key)
            && *expires > now + 30
        {
            return Ok(token.clone());
        }
        let url = self.check_url(token_url)?;
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": token_url,
            "iat": now, "exp": now + 240, "jti": uuid::Uuid::new_v4().to_string(),
        });
        let key_pair = ctx.gateway_key;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(key_pair.kid.clone());
        let assertion = jsonwebtoken::encode(&header, &claims, &key_pair.encoding)
            .map_err(|e| AttemptError::Permanent(format!("signing the token request: {e}")))?;
        let response = self
            .client
            .post(url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", crate::auth::token::ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(send_error)?;
        if !response.status().is_success() {
            // A refused token request is treated like the push it guards.
            return Err(AttemptError::Status {
                code: response.status().as_u16(),
                retry_after: None,
            });
        }
        let body: Value = response
            .json()
            .await
            .map_err(|e| AttemptError::Connect(e.to_string()))?;
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                AttemptError::Permanent("the token response has no access_token".into())
            })?
            .to_string();
        let expires_in = body
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(300);
        if let Ok(mut cache) = self.tokens.lock() {
            cache.insert(key, (token.clone(), now + expires_in));
        }
        Ok(token)
    }
}

fn send_error(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        AttemptError::Timeout
    } else {
        AttemptError::Connect(e.to_string())
    }
}

#[async_trait]
impl Transport for FhirRest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::FhirRest
    }

    async fn send(
        &self,
        ctx: &SendContext<'_>,
        endpoint: &Endpoint,
        copy: &PreparedCopy<'_>,
    ) -> DeliveryOutcome {
        match self.push(ctx, endpoint, copy).await {
            Ok(code) => DeliveryOutcome::Delivered {
                status_code: Some(code),
            },
            Err(e) if e.is_retryable() => DeliveryOutcome::RetryAfter {
                reason: e.describe(),
                status_code: e.status_code(),
                after: match e {
                    AttemptError::Status { retry_after, .. } => retry_after,
                    _ => None,
                },
            },
            Err(e) => DeliveryOutcome::Permanent {
                code: match e {
                    AttemptError::Status { .. } => codes::DELIVERY_REFUSED,
                    _ => codes::DELIVERY_ENDPOINT,
                },
                reason: e.describe(),
                status_code: e.status_code(),
            },
        }
    }
}
