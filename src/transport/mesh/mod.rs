//! MESH, NHS England's message exchange: how GP practices receive (ITK3 messages over MESH;
//! the MESH API as NHS England's MESH sandbox implements it). This module is the MESH API
//! client; the ITK3 message is `crate::itk`, its XML `crate::fhir::xml`, the transport
//! [`transport`] and the delivery and inbox use cases `crate::delivery::mesh`.
//!
//! - [`auth`]: the `NHSMESH` authorisation header (HMAC-SHA256, nonce and counter);
//! - [`client`]: [`MeshClient`]: handshake, send (gzip above `compress_above_bytes`, chunks
//!   above `chunk_size_bytes`), inbox listing (paged), download (chunks joined, gzip undone),
//!   acknowledge, tracking, endpoint lookup (cached for `lookup_cache_secs`).
//!
//! Failures are a typed [`MeshError`]; [`MeshError::outcome`] and [`send_outcome`] map them
//! onto the delivery outcomes, so a `Transport` for MESH is
//! `client.deliver(&OutboundMessage { .. }).await`:
//!
//! | what happened | outcome |
//! |---|---|
//! | message accepted (202), every chunk uploaded | `AwaitingAcknowledgement` (the MESH message id): the ITK3 acknowledgements complete it |
//! | connection refused or reset, TLS failure, timeout | `RetryAfter` |
//! | 408, 429, 5xx | `RetryAfter` (with `Retry-After` when MESH gives one) |
//! | 401, 403 (credentials, shared key, certificate) | `Permanent` `GW-MESH-01` |
//! | other 4xx, e.g. 417 `{"detail":[{"event":"SEND","code":"12",..}]}` | `Permanent` `GW-MESH-02`, reason `MESH 12 (SEND): Unregistered to address` |
//! | unreadable answer, bad header value, oversized download | `Permanent` `GW-MESH-03` |

pub mod auth;
pub mod client;
pub mod transport;

pub use client::{
    InboxMessage, LookupResult, MeshClient, MessageType, OutboundMessage, SentMessage, Tracking,
};

use std::time::Duration;

use crate::codes;
use crate::transport::DeliveryOutcome;

/// The `Mex-Status*` headers of a downloaded message (a REPORT's are what it reports) and
/// `Mex-LinkedMsgID`, the message a report is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshStatus {
    /// `SUCCESS` or `ERROR`.
    pub success: Option<String>,
    /// `SEND`, `TRANSFER`, ...
    pub event: Option<String>,
    /// `00` for a transferred message; the MESH error code of a report (e.g. `14`).
    pub code: Option<String>,
    pub description: Option<String>,
    pub linked_message_id: Option<String>,
    /// `yyyyMMddHHmmss`.
    pub timestamp: Option<String>,
}

/// How a MESH call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeshError {
    /// No connection (refused, reset, DNS, TLS).
    #[error("connection to MESH failed: {0}")]
    Connect(String),
    #[error("MESH did not answer in time")]
    Timeout,
    /// 408, 429 or 5xx.
    #[error("MESH answered {status}: {detail}")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
        detail: String,
    },
    /// 401 or 403: the mailbox's credentials.
    #[error("MESH refused the mailbox's credentials ({status}): {detail}")]
    AuthRejected { status: u16, detail: String },
    /// Any other 4xx, with MESH's error code when it gave one.
    #[error("{}", refused_reason(*status, event.as_deref(), code.as_deref(), message))]
    Refused {
        status: u16,
        event: Option<String>,
        code: Option<String>,
        message: String,
    },
    /// An answer that cannot be read (JSON, gzip, size).
    #[error("unexpected answer from MESH: {0}")]
    Protocol(String),
    /// The request cannot be made as given (a header value, a URL).
    #[error("{0}")]
    Config(String),
}

fn refused_reason(status: u16, event: Option<&str>, code: Option<&str>, message: &str) -> String {
    match (code, event) {
        (Some(code), Some(event)) => format!("MESH {code} ({event}): {message} [{status}]"),
        (Some(code), None) => format!("MESH {code}: {message} [{status}]"),
        _ => format!("MESH refused the request ({status}): {message}"),
    }
}

impl MeshError {
    /// Whether another attempt later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MeshError::Connect(_) | MeshError::Timeout | MeshError::Unavailable { .. }
        )
    }

    /// The HTTP status MESH answered with, if it answered.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            MeshError::Unavailable { status, .. }
            | MeshError::AuthRejected { status, .. }
            | MeshError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The delivery outcome of a send that failed so (the table in the module docs).
    pub fn outcome(&self) -> DeliveryOutcome {
        let reason = self.to_string();
        let status_code = self.status_code();
        match self {
            MeshError::Connect(_) | MeshError::Timeout => DeliveryOutcome::RetryAfter {
                reason,
                status_code,
                after: None,
            },
            MeshError::Unavailable { retry_after, .. } => DeliveryOutcome::RetryAfter {
                reason,
                status_code,
                after: *retry_after,
            },
            MeshError::AuthRejected { .. } => DeliveryOutcome::Permanent {
                code: codes::MESH_AUTH,
                reason,
                status_code,
            },
            MeshError::Refused { .. } => DeliveryOutcome::Permanent {
                code: codes::MESH_REFUSED,
                reason,
                status_code,
            },
            MeshError::Protocol(_) | MeshError::Config(_) => DeliveryOutcome::Permanent {
                code: codes::MESH_PROTOCOL,
                reason,
                status_code,
            },
        }
    }
}

/// The delivery outcome of a send: accepted by MESH is `AwaitingAcknowledgement` with the MESH
/// message id as the reference (MESH reports name it in `Mex-LinkedMsgID`).
pub fn send_outcome(result: &Result<SentMessage, MeshError>) -> DeliveryOutcome {
    match result {
        Ok(sent) => DeliveryOutcome::AwaitingAcknowledgement {
            reference: sent.message_id.clone(),
        },
        Err(e) => e.outcome(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_onto_delivery_outcomes() {
        let sent = Ok(SentMessage {
            message_id: "ABC".into(),
            chunks: 1,
            compressed: false,
        });
        assert_eq!(
            send_outcome(&sent),
            DeliveryOutcome::AwaitingAcknowledgement {
                reference: "ABC".into()
            }
        );
        for e in [
            MeshError::Connect("refused".into()),
            MeshError::Timeout,
            MeshError::Unavailable {
                status: 503,
                retry_after: None,
                detail: String::new(),
            },
        ] {
            assert!(
                matches!(e.outcome(), DeliveryOutcome::RetryAfter { .. }),
                "{e:?}"
            );
        }
        let busy = MeshError::Unavailable {
            status: 429,
            retry_after: Some(Duration::from_secs(9)),
            detail: "slow down".into(),
        };
        assert_eq!(
            busy.outcome(),
            DeliveryOutcome::RetryAfter {
                reason: "MESH answered 429: slow down".into(),
                status_code: Some(429),
                after: Some(Duration::from_secs(9)),
            }
        );
        let auth = MeshError::AuthRejected {
            status: 403,
            detail: "Invalid Authentication Token".into(),
        };
        assert!(matches!(
            auth.outcome(),
            DeliveryOutcome::Permanent { code, status_code: Some(403), reason }
                if code == codes::MESH_AUTH && reason.contains("Invalid Authentication Token")
        ));
        let unregistered = MeshError::Refused {
            status: 417,
            event: Some("SEND".into()),
            code: Some("12".into()),
            message: "Unregistered to address".into(),
        };
        assert_eq!(
            unregistered.outcome(),
            DeliveryOutcome::Permanent {
                code: codes::MESH_REFUSED,
                reason: "MESH 12 (SEND): Unregistered to address [417]".into(),
                status_code: Some(417),
            }
        );
        assert!(matches!(
            MeshError::Protocol("x".into()).outcome(),
            DeliveryOutcome::Permanent { code, .. } if code == codes::MESH_PROTOCOL
        ));
    }
}
