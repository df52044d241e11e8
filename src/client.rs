//! A small SMART Backend Services client for the gateway, used by the demo and the tests: it
//! signs client assertions, exchanges them for access tokens, and calls the FHIR API over
//! mutual TLS.

use anyhow::Context;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::auth::token::ASSERTION_TYPE;

/// Signs a client assertion (ES384) for `client_id`, addressed to `token_url`.
pub fn sign_assertion(
    client_id: &str,
    key_pem: &[u8],
    token_url: &str,
    now: i64,
) -> anyhow::Result<String> {
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + 240,
        "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    sign_claims(&claims, key_pem)
}

/// Signs arbitrary claims with an EC P-384 PKCS#8 key (ES384).
pub fn sign_claims(claims: &Value, key_pem: &[u8]) -> anyhow::Result<String> {
    let key = EncodingKey::from_ec_pem(key_pem).context("reading the client key")?;
    jsonwebtoken::encode(&Header::new(Algorithm::ES384), claims, &key)
        .context("signing the assertion")
}

/// An HTTP client trusting `ca_pem`, presenting `identity_pem` (certificate and key) if given.
pub fn http_client(ca_pem: &[u8], identity_pem: Option<&[u8]>) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem).context("reading the CA certificate")?;
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(std::time::Duration::from_secs(30))
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(identity) = identity_pem {
        builder = builder.identity(
            reqwest::Identity::from_pem(identity).context("reading the client identity")?,
        );
    }
    builder.build().context("building the HTTP client")
}

/// A client registered with the gateway.
pub struct GatewayClient {
    pub base_url: String,
    pub client_id: String,
    key_pem: Vec<u8>,
    pub http: reqwest::Client,
}

impl GatewayClient {
    pub fn new(
        base_url: &str,
        client_id: &str,
        key_pem: Vec<u8>,
        http: reqwest::Client,
    ) -> GatewayClient {
        GatewayClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            client_id: client_id.into(),
            key_pem,
            http,
        }
    }

    pub fn token_url(&self) -> String {
        format!("{}/oauth2/token", self.base_url)
    }

    /// Exchanges a fresh assertion for an access token.
    pub async fn token(&self) -> anyhow::Result<String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let assertion = sign_assertion(&self.client_id, &self.key_pem, &self.token_url(), now)?;
        let response = self
            .http
            .post(self.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion.as_str()),
            ])
            .send()
            .await
            .context("calling the token endpoint")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("reading the token response")?;
        if !status.is_success() {
            anyhow::bail!("token refused ({status}): {body}");
        }
        body.get("access_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .context("the token response has no access_token")
    }
}
