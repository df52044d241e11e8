//! The audit log's entry format and its hash chain: pure values, below both the store that
//! persists entries and the audit service that writes and verifies them.
//!
//! Each entry carries the SHA-256 of the previous entry's canonical encoding, so an edit, a
//! deletion or a reordering breaks the chain at that point.

use serde_json::Value;

/// The `prev_hash` of the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Whether the audited step succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// An entry before it is placed on the chain (no sequence number, time or hashes yet).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub action: &'static str,
    pub outcome: Outcome,
    pub actor_client: Option<String>,
    pub actor_ods: Option<String>,
    pub nhs_number: Option<String>,
    pub entities: Vec<String>,
    pub detail: Value,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub recorded_at: String,
    pub actor_client: Option<String>,
    pub actor_ods: Option<String>,
    pub action: String,
    pub outcome: String,
    pub nhs_number: Option<String>,
    /// JSON array of entity references, as stored.
    pub entities: String,
    /// JSON object with the event's detail, as stored.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEntry {
    /// Places `draft` on the chain after `prev` (`None` for the first entry).
    pub fn chain(prev: Option<(i64, &str)>, draft: AuditDraft, recorded_at: String) -> AuditEntry {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash.to_string()),
            None => (1, GENESIS_HASH.to_string()),
        };
        let mut entry = AuditEntry {
            seq,
            recorded_at,
            actor_client: draft.actor_client,
            actor_ods: draft.actor_ods,
            action: draft.action.to_string(),
            outcome: draft.outcome.as_str().to_string(),
            nhs_number: draft.nhs_number,
            entities: serde_json::to_string(&draft.entities).unwrap_or_else(|_| "[]".into()),
            detail: draft.detail.to_string(),
            prev_hash,
            hash: String::new(),
        };
        entry.hash = entry.compute_hash();
        entry
    }

    /// The canonical encoding hashed into the chain: a compact JSON array of every field but
    /// `hash`, in a fixed order, with `entities` and `detail` as the exact stored strings.
    pub fn canonical(&self) -> Vec<u8> {
        let tuple = (
            self.seq,
            &self.recorded_at,
            &self.actor_client,
            &self.actor_ods,
            &self.action,
            &self.outcome,
            &self.nhs_number,
            &self.entities,
            &self.detail,
            &self.prev_hash,
        );
        serde_json::to_vec(&tuple).unwrap_or_default()
    }

    pub fn compute_hash(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.canonical());
        hex::encode(digest.as_ref())
    }
}
