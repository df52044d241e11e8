//! `/oauth2/token`: SMART Backend Services client-credentials with a signed JWT assertion, and
//! the gateway's own short-lived access tokens.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::{ClientKey, GatewayKey};
use super::principal::PeerIdentity;
use super::scope::Scope;
use crate::config::{AuthSettings, ClientRegistration};
use crate::domain::Role;
use crate::store::{Store, StoreError};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A registered client with its verification key.
pub struct Client {
    pub registration: ClientRegistration,
    pub key: ClientKey,
    pub allowed: Vec<Scope>,
}

/// The registered clients, by id.
pub struct ClientRegistry {
    clients: HashMap<String, Client>,
}

impl ClientRegistry {
    pub fn load(registrations: &[ClientRegistration]) -> anyhow::Result<ClientRegistry> {
        let mut clients = HashMap::new();
        for reg in registrations {
            let key = ClientKey::from_certificate_file(&reg.certificate)
                .map_err(|e| anyhow::anyhow!("client {}: {e}", reg.id))?;
            let mut allowed = Vec::new();
            for s in &reg.scopes {
                let scope = Scope::parse(s)
                    .ok_or_else(|| anyhow::anyhow!("client {}: invalid scope {s:?}", reg.id))?;
                allowed.push(scope);
            }
            clients.insert(
                reg.id.clone(),
                Client {
                    registration: reg.clone(),
                    key,
                    allowed,
                },
            );
        }
        Ok(ClientRegistry { clients })
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.clients.get(id)
    }

    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

/// The token request form (RFC 6749 §4.4 with RFC 7523 client authentication).
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
    pub scope: Option<String>,
}

/// Why a token request failed, in RFC 6749 §5.2 terms.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{description}")]
    InvalidRequest { description: String },
    #[error("{description}")]
    InvalidClient {
        client_id: Option<String>,
        description: String,
    },
    #[error("{description}")]
    UnsupportedGrantType { description: String },
    #[error("{description}")]
    InvalidScope {
        client_id: Option<String>,
        description: String,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl TokenError {
    fn client(client_id: Option<&str>, description: impl Into<String>) -> TokenError {
        TokenError::InvalidClient {
            client_id: client_id.map(str::to_string),
            description: description.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest { .. } => "invalid_request",
            TokenError::InvalidClient { .. } => "invalid_client",
            TokenError::UnsupportedGrantType { .. } => "unsupported_grant_type",
            TokenError::InvalidScope { .. } => "invalid_scope",
            TokenError::Store(_) => "server_error",
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        match self {
            TokenError::InvalidClient { client_id, .. }
            | TokenError::InvalidScope { client_id, .. } => client_id.as_deref(),
            _ => None,
        }
    }
}

/// Claims of a client assertion.
#[derive(Debug, Deserialize)]
struct AssertionClaims {
    iss: Option<String>,
    exp: Option<i64>,
    iat: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
}

/// Claims of the gateway's access tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub ods: String,
    pub role: Role,
    pub scope: String,
    /// RFC 8705: the client certificate the token was issued over, when there was one. The token
    /// is then refused over any other certificate, or over none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The confirmation claim (`cnf`) of a certificate-bound access token (RFC 8705 §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The base64url SHA-256 thumbprint of the DER client certificate.
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

/// A granted token.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

/// Issues and checks tokens.
pub struct TokenService {
    pub clients: ClientRegistry,
    pub gateway_key: GatewayKey,
    pub settings: AuthSettings,
    /// The gateway's public base URL: the issuer of access tokens, and their audience.
    pub issuer: String,
    /// `<issuer>/oauth2/token`: the audience client assertions must name.
    pub token_url: String,
}

impl TokenService {
    /// Checks a token request and, if it holds, issues an access token.
    /// `peer` is what the TLS layer learnt of the client certificate presented on the connection:
    /// its O must be the client's organisation, and the token is bound to its thumbprint.
    pub async fn exchange(
        &self,
        store: &dyn Store,
        req: &TokenRequest,
        peer: Option<&PeerIdentity>,
        now: i64,
    ) -> Result<(TokenResponse, AccessClaims), TokenError> {
        let peer_organisation = peer.and_then(|p| p.organisation.as_deref());
        match req.grant_type.as_deref() {
            Some("client_credentials") => {}
            Some(other) => {
                return Err(TokenError::UnsupportedGrantType {
                    description: format!(
                        "grant_type {other:?} is not supported; use client_credentials"
                    ),
                });
            }
            None => {
                return Err(TokenError::InvalidRequest {
                    description: "grant_type is missing".into(),
                });
            }
        }
        if req.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
            return Err(TokenError::InvalidRequest {
                description: format!("client_assertion_type must be {ASSERTION_TYPE}"),
            });
        }
        let assertion = req
            .client_assertion
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| TokenError::InvalidRequest {
                description: "client_assertion is missing".into(),
            })?;

        // Look at the header and the claimed issuer before verifying, to find the key.
        let alg = header_algorithm(assertion)?;
        let unverified = unverified_claims(assertion)?;
        let client_id = unverified
            .iss
            .clone()
            .ok_or_else(|| TokenError::client(None, "iss is missing"))?;
        let cid = Some(client_id.as_str());
        let client = self.clients.get(&client_id).ok_or_else(|| {
            TokenError::client(cid, format!("client {client_id:?} is not registered"))
        })?;
        if alg != client.key.algorithm {
            return Err(TokenError::client(
                cid,
                format!("this client must sign with {:?}", client.key.algorithm),
            ));
        }

        let mut validation = Validation::new(client.key.algorithm);
        validation.leeway = self.settings.clock_skew_secs;
        validation.set_audience(&[self.token_url.as_str()]);
        validation.set_issuer(&[client_id.as_str()]);
        validation.sub = Some(client_id.clone());
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Times are checked below against the gateway's clock, not the system time.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        jsonwebtoken::decode::<serde_json::Value>(assertion, &client.key.key, &validation)
            .map_err(|e| {
                TokenError::client(
                    cid,
                    format!("assertion rejected: {}", describe_jwt_error(&e)),
                )
            })?;

        // Times are the client's numbers: saturating arithmetic, so that an `exp` of i64::MAX is
        // "too far ahead", not an overflow (found by tests/fuzz).
        let skew = self.settings.clock_skew_secs as i64;
        let exp = unverified.exp.unwrap_or(0);
        if exp.saturating_add(skew) < now {
            return Err(TokenError::client(cid, "assertion rejected: expired"));
        }
        if unverified.nbf.is_some_and(|nbf| nbf > now + skew) {
            return Err(TokenError::client(
                cid,
                "assertion rejected: not yet valid (nbf)",
            ));
        }
        if exp.saturating_sub(now) > self.settings.max_assertion_lifetime_secs as i64 + skew {
            return Err(TokenError::client(
                cid,
                "assertion lifetime is longer than allowed (exp too far ahead)",
            ));
        }
        if let Some(iat) = unverified.iat
            && iat > now + skew
        {
            return Err(TokenError::client(
                cid,
                "assertion was issued in the future (iat)",
            ));
        }
        let jti = unverified
            .jti
            .as_deref()
            .filter(|j| !j.is_empty())
            .ok_or_else(|| TokenError::client(cid, "jti is missing"))?;
        if jti.len() > 256 {
            return Err(TokenError::client(cid, "jti is too long"));
        }

        if let Some(org) = peer_organisation
            && org != client.registration.ods.as_str()
        {
            return Err(TokenError::client(
                cid,
                "the client certificate's organisation does not match the client",
            ));
        }

        let scope =
            grant_scopes(client, req.scope.as_deref()).map_err(|d| TokenError::InvalidScope {
                client_id: Some(client_id.clone()),
                description: d,
            })?;

        // Last, so that a refused assertion does not burn its jti.
        if !store
            .remember_assertion(&client_id, jti, exp.max(now).saturating_add(skew), now)
            .await?
        {
            return Err(TokenError::client(
                cid,
                "assertion jti was already used (replay)",
            ));
        }

        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: client_id.clone(),
            aud: self.issuer.clone(),
            exp: now + self.settings.access_token_ttl_secs as i64,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: client_id.clone(),
            ods: client.registration.ods.to_string(),
            role: client.registration.role,
            scope: scope.clone(),
            cnf: peer
                .and_then(|p| p.thumbprint.clone())
                .map(|x5t_s256| Confirmation { x5t_s256 }),
        };
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.gateway_key.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.gateway_key.encoding)
            .map_err(|e| TokenError::Store(StoreError::Io(std::io::Error::other(e.to_string()))))?;
        Ok((
            TokenResponse {
                access_token,
                token_type: "bearer",
                expires_in: self.settings.access_token_ttl_secs,
                scope,
            },
            claims,
        ))
    }

    /// Verifies one of the gateway's own access tokens.
    pub fn verify_access_token(&self, token: &str, now: i64) -> Result<AccessClaims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| describe_jwt_error(&e))?;
        if header.alg != Algorithm::ES384 {
            return Err("access tokens are ES384".into());
        }
        let mut validation = Validation::new(Algorithm::ES384);
        validation.set_audience(&[self.issuer.as_str()]);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Expiry is checked against the gateway's clock, not the system time.
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &self.gateway_key.decoding, &validation)
                .map_err(|e| describe_jwt_error(&e))?;
        if data.claims.exp <= now {
            return Err("expired".into());
        }
        if data.claims.iat > now + self.settings.clock_skew_secs as i64 {
            return Err("issued in the future".into());
        }
        Ok(data.claims)
    }
}

/// The scopes to grant: those requested (each within what the client may have), or everything
/// the client may have when it asked for nothing in particular.
fn grant_scopes(client: &Client, requested: Option<&str>) -> Result<String, String> {
    let requested: Vec<&str> = requested
        .map(|s| s.split_whitespace().collect())
        .unwrap_or_default();
    if requested.is_empty() {
        return Ok(client
            .allowed
            .iter()
            .map(Scope::as_str)
            .collect::<Vec<_>>()
            .join(" "));
    }
    for r in &requested {
        let scope = Scope::parse(r).ok_or_else(|| format!("scope {r:?} is not a system scope"))?;
        if !client.allowed.iter().any(|a| scope.within(a)) {
            return Err(format!("scope {r:?} is not allowed for this client"));
        }
    }
    Ok(requested.join(" "))
}

fn header_algorithm(assertion: &str) -> Result<Algorithm, TokenError> {
    // Read `alg` by hand first: jsonwebtoken cannot represent `none`, and we want to say so.
    let header_b64 = assertion.split('.').next().unwrap_or_default();
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header_b64.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| TokenError::client(None, "client_assertion is not a JWT"))?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("RS384") => Ok(Algorithm::RS384),
        Some("ES384") => Ok(Algorithm::ES384),
        Some(a) if a.eq_ignore_ascii_case("none") => Err(TokenError::client(
            None,
            "unsigned assertions (alg none) are refused",
        )),
        Some(a) if a.starts_with("HS") => Err(TokenError::client(
            None,
            format!("HMAC assertions ({a}) are refused"),
        )),
        Some(a) => Err(TokenError::client(
            None,
            format!("algorithm {a} is not accepted; use RS384 or ES384"),
        )),
        None => Err(TokenError::client(None, "assertion header has no alg")),
    }
}

fn unverified_claims(assertion: &str) -> Result<AssertionClaims, TokenError> {
    let mut parts = assertion.split('.');
    let payload = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(p), Some(_), None) => p,
        _ => {
            return Err(TokenError::client(
                None,
                "client_assertion is not a signed JWT",
            ));
        }
    };
    URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice::<AssertionClaims>(&b).ok())
        .ok_or_else(|| TokenError::client(None, "client_assertion claims are unreadable"))
}

fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not yet valid (nbf)".into(),
        ErrorKind::InvalidAudience => "wrong aud".into(),
        ErrorKind::InvalidIssuer => "wrong iss".into(),
        ErrorKind::InvalidSubject => "sub must equal iss".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
        ErrorKind::InvalidAlgorithm => "algorithm not allowed".into(),
        _ => "malformed token".into(),
    }
}
