//! The endpoint directory, typed: how each recipient receives (kind, URL, the profile it speaks,
//! how the gateway authenticates to it). Stored as [`EndpointRecord`] rows; read through
//! [`Endpoint::from_record`], so that nothing past this point handles the stored strings.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::store::EndpointRecord;
use crate::translate::Target;

/// How an endpoint receives copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EndpointKind {
    /// The copy is POSTed as a FHIR Bundle (services, ICBs, other gateways).
    #[serde(rename = "fhir-rest")]
    FhirRest,
    /// The copy goes as an ITK3 Transfer of Care message over MESH (GP practices).
    #[serde(rename = "mesh")]
    Mesh,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::FhirRest => "fhir-rest",
            EndpointKind::Mesh => "mesh",
        }
    }
}

impl std::str::FromStr for EndpointKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fhir-rest" => Ok(EndpointKind::FhirRest),
            "mesh" => Ok(EndpointKind::Mesh),
            other => Err(format!("endpoint kind {other:?} is not fhir-rest or mesh")),
        }
    }
}

/// The ITK3 Transfer of Care workflow for inpatient discharge documents, and its
/// acknowledgements' (`corpus/itk3/README.md` §3).
pub const TOC_DISCHARGE_WORKFLOW: &str = "TOC_FHIR_IP_DISCH";

/// Where a MESH endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshAddress {
    /// The recipient's MESH mailbox; `None`: found by MESH endpoint lookup (ODS code and
    /// workflow), cached.
    pub mailbox: Option<String>,
    /// The document workflow (`TOC_FHIR_IP_DISCH`); acknowledgements come on `{workflow}_ACK`.
    pub workflow: String,
}

impl MeshAddress {
    /// Checks a mailbox id and workflow id as MESH writes them (upper-case letters, digits,
    /// `_`; a mailbox at most 20 characters, a workflow at most 64).
    pub fn new(mailbox: Option<&str>, workflow: Option<&str>) -> Result<MeshAddress, String> {
        let ok = |v: &str, max: usize| {
            !v.is_empty()
                && v.len() <= max
                && v.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        };
        if let Some(m) = mailbox
            && !ok(m, 20)
        {
            return Err(format!(
                "mailbox {m:?} is not a MESH mailbox id (upper-case letters and digits)"
            ));
        }
        let workflow = workflow.unwrap_or(TOC_DISCHARGE_WORKFLOW);
        if !ok(workflow, 64) {
            return Err(format!("workflow {workflow:?} is not a MESH workflow id"));
        }
        Ok(MeshAddress {
            mailbox: mailbox.map(str::to_owned),
            workflow: workflow.to_owned(),
        })
    }
}

/// How the gateway authenticates to an endpoint (beyond mutual TLS with its own certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(untagged)]
pub enum EndpointAuth {
    /// A static bearer token.
    Bearer { bearer_token: String },
    /// A token fetched from the recipient's token URL with a gateway-signed assertion (SMART
    /// Backend Services, the gateway as the client).
    TokenUrl {
        token_url: String,
        #[serde(default = "default_client_id")]
        client_id: String,
    },
    /// Mutual TLS alone.
    #[default]
    None,
}

fn default_client_id() -> String {
    "throughcare".into()
}

impl EndpointAuth {
    /// Reads the stored JSON (`{}` for none). Unknown shapes are refused.
    pub fn parse(value: &Value) -> Result<EndpointAuth, String> {
        match value {
            Value::Null => Ok(EndpointAuth::None),
            Value::Object(o) if o.is_empty() => Ok(EndpointAuth::None),
            Value::Object(o) => {
                let known = ["bearer_token", "token_url", "client_id"];
                if let Some(k) = o.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(format!(
                        "auth.{k} is not known (bearer_token, token_url, client_id)"
                    ));
                }
                if o.contains_key("bearer_token") && o.contains_key("token_url") {
                    return Err("auth has both bearer_token and token_url".into());
                }
                serde_json::from_value::<EndpointAuth>(value.clone())
                    .map_err(|e| format!("auth: {e}"))
                    .and_then(|a| match a {
                        EndpointAuth::None => Err("auth needs bearer_token or token_url".into()),
                        a => Ok(a),
                    })
            }
            _ => Err("auth must be an object".into()),
        }
    }

    /// The stored JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            EndpointAuth::None => json!({}),
            other => serde_json::to_value(other).unwrap_or_else(|_| json!({})),
        }
    }

    /// The form shown to operators: secrets replaced by "(set)".
    pub fn redacted(&self) -> Value {
        match self {
            EndpointAuth::Bearer { .. } => json!({"bearer_token": "(set)"}),
            other => other.to_json(),
        }
    }
}

/// Checks an endpoint URL: `https`, or plain `http` to a loopback host (`localhost`,
/// `127.0.0.1`, `[::1]`) only when `allow_loopback_http` (development and tests). Used when an
/// endpoint is registered and again before every push.
pub fn check_url(url: &str, allow_loopback_http: bool) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url: {e}"))?;
    let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(parsed),
        "http" if loopback && allow_loopback_http => Ok(parsed),
        "http" if loopback => Err(
            "url must be https (plain http to a loopback address only when delivery.allow_loopback_http is set, for development)"
                .into(),
        ),
        _ => Err("url must be https".into()),
    }
}

/// A recipient's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ods: String,
    pub kind: EndpointKind,
    /// `fhir-rest`: where copies are POSTed (empty for MESH).
    pub url: String,
    /// `mesh`: the mailbox and workflow.
    pub mesh: Option<MeshAddress>,
    pub profile: Target,
    pub auth: EndpointAuth,
    pub updated_at: String,
    pub updated_by: String,
}

impl Endpoint {
    /// Reads a stored row. A row that no longer reads (edited by hand, or from a newer version)
    /// is an error for the delivery, never a guess.
    pub fn from_record(r: &EndpointRecord) -> Result<Endpoint, String> {
        let auth: Value = serde_json::from_str(&r.auth).map_err(|e| format!("auth: {e}"))?;
        let kind: EndpointKind = r.kind.parse()?;
        let mesh = match kind {
            EndpointKind::Mesh => Some(MeshAddress::new(
                r.mailbox.as_deref(),
                r.workflow.as_deref(),
            )?),
            EndpointKind::FhirRest => None,
        };
        Ok(Endpoint {
            ods: r.ods.clone(),
            kind,
            url: r.url.clone(),
            mesh,
            profile: r
                .profile
                .parse::<Target>()
                .map_err(|_| format!("endpoint profile {:?} is unknown", r.profile))?,
            auth: EndpointAuth::parse(&auth)?,
            updated_at: r.updated_at.clone(),
            updated_by: r.updated_by.clone(),
        })
    }

    pub fn to_record(&self) -> EndpointRecord {
        EndpointRecord {
            ods: self.ods.clone(),
            kind: self.kind.as_str().into(),
            url: self.url.clone(),
            profile: self.profile.as_str().into(),
            auth: self.auth.to_json().to_string(),
            mailbox: self.mesh.as_ref().and_then(|m| m.mailbox.clone()),
            workflow: self.mesh.as_ref().map(|m| m.workflow.clone()),
            updated_at: self.updated_at.clone(),
            updated_by: self.updated_by.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_pass_and_loopback_http_only_when_allowed() {
        assert!(check_url("https://gp.example.nhs.uk/fhir", false).is_ok());
        for bad in [
            "http://gp.example.nhs.uk/fhir",
            "ftp://gp.example.nhs.uk/fhir",
            "http://127.0.0.1:8080/fhir",
            "http://localhost/fhir",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:8080/fhir", true).is_ok());
        assert!(check_url("http://[::1]:8080/fhir", true).is_ok());
        assert!(
            check_url("http://gp.example.nhs.uk/fhir", true).is_err(),
            "the flag allows loopback only"
        );
    }

    #[test]
    fn a_mesh_address_takes_mesh_ids_and_defaults_to_the_discharge_workflow() {
        let a = MeshAddress::new(Some("X26ABC2"), None).unwrap();
        assert_eq!(a.workflow, "TOC_FHIR_IP_DISCH");
        assert!(MeshAddress::new(None, None).unwrap().mailbox.is_none());
        for bad in ["x26abc2", "X26 ABC2", "", "ABCDEFGHIJKLMNOPQRSTU"] {
            assert!(MeshAddress::new(Some(bad), None).is_err(), "{bad}");
        }
        assert!(MeshAddress::new(None, Some("toc")).is_err());
    }

    #[test]
    fn auth_reads_each_mode_and_refuses_unknown_shapes() {
        assert_eq!(EndpointAuth::parse(&json!({})).unwrap(), EndpointAuth::None);
        assert_eq!(
            EndpointAuth::parse(&json!({"bearer_token": "t"})).unwrap(),
            EndpointAuth::Bearer {
                bearer_token: "t".into()
            }
        );
        assert_eq!(
            EndpointAuth::parse(&json!({"token_url": "https://x/token"})).unwrap(),
            EndpointAuth::TokenUrl {
                token_url: "https://x/token".into(),
                client_id: "throughcare".into()
            }
        );
        assert!(EndpointAuth::parse(&json!({"password": "p"})).is_err());
        assert!(EndpointAuth::parse(&json!({"bearer_token": "t", "token_url": "u"})).is_err());
        assert!(EndpointAuth::parse(&json!("token")).is_err());
        let bearer = EndpointAuth::Bearer {
            bearer_token: "secret".into(),
        };
        assert_eq!(bearer.redacted(), json!({"bearer_token": "(set)"}));
        assert_eq!(
            EndpointAuth::parse(&bearer.to_json()).unwrap(),
            bearer,
            "the stored form reads back"
        );
    }
}
