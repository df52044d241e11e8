//! The audit log: typed events, the hash chain, and its verification.
//!
//! Every stage records what it did through [`Audit`]. Entries are chained: each carries the
//! SHA-256 of the previous entry's canonical encoding, so an edit, a deletion or a reordering
//! breaks the chain at that point and `throughcare audit verify` names it.

pub mod checkpoint;
mod event;
pub mod fhir;

pub use event::{Actor, AuditEvent};

use std::sync::Arc;

pub use crate::chain::{AuditDraft, AuditEntry, GENESIS_HASH, Outcome};
use crate::store::{Store, StoreError};

/// The result of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub entries: u64,
    pub head: Option<(i64, String)>,
    pub broken: Option<Break>,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The newest checkpoint's sequence number.
    pub last_checkpoint: Option<i64>,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    pub seq: i64,
    pub reason: String,
}

/// Checks every entry in sequence order: contiguous numbering from 1, each `prev_hash` equal to
/// the previous entry's hash, and each hash equal to the hash of its canonical encoding.
pub async fn verify(store: &dyn Store) -> Result<VerifyReport, StoreError> {
    let mut report = VerifyReport::default();
    let mut expected_seq = 1i64;
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut after = 0i64;
    loop {
        let page = store.audit_page(after, 1000).await?;
        if page.is_empty() {
            break;
        }
        for entry in page {
            after = entry.seq;
            report.entries += 1;
            let reason = if entry.seq != expected_seq {
                Some(format!(
                    "expected entry {expected_seq} but found {}",
                    entry.seq
                ))
            } else if entry.prev_hash != prev_hash {
                Some("its prev_hash does not match the hash of the entry before it".to_string())
            } else if entry.compute_hash() != entry.hash {
                Some("its content does not match its hash (the entry was altered)".to_string())
            } else {
                None
            };
            if let Some(reason) = reason {
                report.broken = Some(Break {
                    seq: entry.seq,
                    reason,
                });
                return Ok(report);
            }
            expected_seq = entry.seq + 1;
            prev_hash = entry.hash.clone();
            report.head = Some((entry.seq, entry.hash));
        }
    }
    Ok(report)
}

/// Checks the chain, then the signed checkpoints (store and file copies) against it: each must
/// carry the gateway's signature and match the entry at its sequence number, which must exist.
/// A chain cut back below the newest checkpoint is reported as truncated.
pub async fn verify_all(
    store: &dyn Store,
    data_dir: &std::path::Path,
    key: Option<&jsonwebtoken::DecodingKey>,
) -> Result<VerifyReport, StoreError> {
    let mut report = verify(store).await?;
    if report.broken.is_some() {
        return Ok(report);
    }
    let mut checkpoints = store.checkpoints().await?;
    match checkpoint::read_file(data_dir) {
        Ok(file) => {
            for cp in file {
                match checkpoints.iter().find(|c| c.seq == cp.seq) {
                    Some(c) if c != &cp => {
                        report.broken = Some(Break {
                            seq: cp.seq,
                            reason:
                                "the checkpoint file and the store disagree about this checkpoint"
                                    .into(),
                        });
                        return Ok(report);
                    }
                    Some(_) => {}
                    None => checkpoints.push(cp),
                }
            }
        }
        Err(e) => {
            report.broken = Some(Break {
                seq: 0,
                reason: format!("the checkpoint file is unreadable: {e}"),
            });
            return Ok(report);
        }
    }
    checkpoints.sort_by_key(|c| c.seq);
    let head_seq = report.head.as_ref().map_or(0, |(s, _)| *s);
    for cp in &checkpoints {
        report.checkpoints += 1;
        if let Some(k) = key
            && !checkpoint::signature_holds(k, cp)
        {
            report.broken = Some(Break {
                seq: cp.seq,
                reason: "a checkpoint's signature does not verify".into(),
            });
            return Ok(report);
        }
        if cp.seq > head_seq {
            report.broken = Some(Break {
                seq: head_seq + 1,
                reason: format!(
                    "the log was truncated: a signed checkpoint covers entry {} but the chain ends at {head_seq}",
                    cp.seq
                ),
            });
            return Ok(report);
        }
        let page = store.audit_page(cp.seq - 1, 1).await?;
        if page.first().map(|e| e.hash.as_str()) != Some(cp.head_hash.as_str()) {
            report.broken = Some(Break {
                seq: cp.seq,
                reason: "the entry does not match the signed checkpoint taken of it".into(),
            });
            return Ok(report);
        }
        report.last_checkpoint = Some(cp.seq);
    }
    if key.is_none() && !checkpoints.is_empty() {
        report.broken = Some(Break {
            seq: 0,
            reason: "checkpoint signatures cannot be checked: the gateway's signing key is missing"
                .into(),
        });
    }
    Ok(report)
}

/// The one door every stage uses to record what happened.
#[derive(Clone)]
pub struct Audit {
    store: Arc<dyn Store>,
}

impl Audit {
    pub fn new(store: Arc<dyn Store>) -> Audit {
        Audit { store }
    }

    /// Appends an event to the chain. A failure to audit is an error for the caller: the
    /// gateway does not act on what it cannot record.
    pub async fn record(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.store.append_audit(vec![event.into_draft()]).await
    }

    /// Records an event where the caller cannot do anything more about a failure than log it
    /// (for example while already answering with an error).
    pub async fn record_or_log(&self, event: AuditEvent) {
        let action = event.action();
        if let Err(err) = self.record(event).await {
            tracing::error!(action, error = %err, "Could not write the audit entry.");
        }
    }

    /// Searches the log for an auditor; reading the audit log is itself audited.
    pub async fn search(
        &self,
        actor: Actor,
        filter: &crate::store::AuditFilter,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let entries = self.store.audit_search(filter).await?;
        self.record(AuditEvent::Searched {
            actor,
            endpoint: "GET /fhir/AuditEvent".into(),
            nhs_number: filter.nhs_number.clone(),
            results: entries.len(),
        })
        .await?;
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(action: &'static str) -> AuditDraft {
        AuditDraft {
            action,
            outcome: Outcome::Success,
            actor_client: Some("prison".into()),
            actor_ods: Some("Y02307".into()),
            nhs_number: Some("9990000018".into()),
            entities: vec!["Bundle/1".into()],
            detail: serde_json::from_str(r#"{"dose":2.50}"#).unwrap(),
        }
    }

    #[test]
    fn chained_entries_link_by_hash() {
        let a = AuditEntry::chain(None, draft("a"), "2026-01-01T00:00:00.000Z".into());
        let b = AuditEntry::chain(Some((a.seq, &a.hash)), draft("b"), "t".into());
        assert_eq!(a.seq, 1);
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.seq, 2);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(a.hash.len(), 64);
        assert_eq!(a.detail, r#"{"dose":2.50}"#);
    }

    #[test]
    fn any_field_change_changes_the_hash() {
        let a = AuditEntry::chain(None, draft("a"), "t".into());
        let mut tampered = a.clone();
        tampered.nhs_number = Some("9990000026".into());
        assert_ne!(tampered.compute_hash(), a.hash);
        let mut tampered = a.clone();
        tampered.outcome = "failure".into();
        assert_ne!(tampered.compute_hash(), a.hash);
        assert_eq!(a.compute_hash(), a.hash);
    }
}
