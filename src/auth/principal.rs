//! The authenticated caller. Every protected handler takes a `Principal`; the ODS code in the
//! token, never the request body, says who the caller is. The edge (`api::principal`) extracts
//! it from the request.

use super::scope::{Permission, Scope};
use crate::domain::{Actor, OdsCode, Role};

/// What the TLS layer learnt about the client certificate on this connection.
#[derive(Debug, Clone, Default)]
pub struct PeerIdentity {
    /// Subject organisation (O) of the verified client certificate.
    pub organisation: Option<String>,
    /// The certificate's thumbprint, `x5t#S256` of RFC 8705: the base64url SHA-256 of its DER.
    /// Access tokens issued over this connection are bound to it.
    pub thumbprint: Option<String>,
}

/// The RFC 8705 thumbprint (`x5t#S256`) of a DER certificate.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client_id: String,
    pub ods: OdsCode,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub break_glass: bool,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor {
            client_id: self.client_id.clone(),
            ods: self.ods.to_string(),
        }
    }

    pub fn has_scope(&self, resource: &str, permission: Permission) -> bool {
        self.scopes.iter().any(|s| s.grants(resource, permission))
    }
}
