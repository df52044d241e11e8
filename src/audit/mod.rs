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
    /// Checkpoints signed with the token key before the audit key existed.
    pub legacy_checkpoints: u64,
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

/// How long past the checkpoint interval the uncovered tail of the log may run (scheduling,
/// a slow disk) before `audit verify` calls it a removed checkpoint.
pub const CHECKPOINT_SLACK_SECS: u64 = 60;

fn broken(report: &mut VerifyReport, seq: i64, reason: impl Into<String>) {
    report.broken = Some(Break {
        seq,
        reason: reason.into(),
    });
}

fn parse_stamp(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Checks the chain, then the signed checkpoints against it. The rules, each a failure that
/// names where it breaks:
///
/// 1. **Signatures.** Each checkpoint verifies with the key its `kid` names: the audit key; or,
///    for a checkpoint made before the audit key existed, the token signing key — accepted only
///    below the first checkpoint signed with the audit key (or when the data directory has no
///    audit key at all, so it was never served by a gateway that has one). Any other key fails.
/// 2. **The chain under each checkpoint.** The entry at a checkpoint's sequence number exists
///    and has the signed hash; a chain ending below the newest checkpoint was truncated.
/// 3. **Both copies.** The checkpoint file and the store's table hold the same checkpoints: a
///    row without its line (a deleted or emptied file) or a line without its row (a deleted row)
///    fails, as does a checkpoint the two copies disagree about.
/// 4. **Coverage.** The gateway signs a checkpoint at every start, at least every
///    `interval_secs` while the head moves, and on shutdown. So when the audit key exists at
///    least one checkpoint must be signed with it, and the entries after the newest checkpoint
///    (all entries, when there is none) must not span more than `interval_secs` plus
///    [`CHECKPOINT_SLACK_SECS`]: a longer uncovered tail means checkpoints were removed.
pub async fn verify_all(
    store: &dyn Store,
    data_dir: &std::path::Path,
    keys: &checkpoint::CheckpointKeys,
    interval_secs: u64,
) -> Result<VerifyReport, StoreError> {
    let mut report = verify(store).await?;
    if report.broken.is_some() {
        return Ok(report);
    }
    let rows = store.checkpoints().await?;
    let lines = match checkpoint::read_file(data_dir) {
        Ok(lines) => lines,
        Err(e) => {
            broken(
                &mut report,
                0,
                format!("the checkpoint file is unreadable: {e}"),
            );
            return Ok(report);
        }
    };
    let mut checkpoints = rows.clone();
    for cp in &lines {
        match checkpoints.iter().find(|c| c.seq == cp.seq) {
            Some(c) if c != cp => {
                broken(
                    &mut report,
                    cp.seq,
                    "the checkpoint file and the store disagree about this checkpoint",
                );
                return Ok(report);
            }
            Some(_) => {}
            None => checkpoints.push(cp.clone()),
        }
    }
    checkpoints.sort_by_key(|c| c.seq);
    if keys.audit.is_none() && keys.token.is_none() && !checkpoints.is_empty() {
        broken(
            &mut report,
            0,
            "checkpoint signatures cannot be checked: the audit key and the token signing key are missing",
        );
        return Ok(report);
    }
    // Rule 1: the audit key, or the token key below the first audit-key checkpoint.
    let audit_kid = keys.audit.as_ref().map(|k| k.kid.as_str());
    let first_audit = checkpoints
        .iter()
        .find(|c| Some(c.kid.as_str()) == audit_kid)
        .map(|c| c.seq);
    let head_seq = report.head.as_ref().map_or(0, |(s, _)| *s);
    for cp in &checkpoints {
        report.checkpoints += 1;
        let key = match (&keys.audit, &keys.token) {
            (Some(a), _) if a.kid == cp.kid => Some(&a.key),
            (_, Some(t)) if t.kid == cp.kid && first_audit.is_none_or(|f| cp.seq < f) => {
                report.legacy_checkpoints += 1;
                Some(&t.key)
            }
            _ => None,
        };
        let Some(key) = key else {
            let reason = if keys.token.as_ref().is_some_and(|t| t.kid == cp.kid) {
                "the checkpoint is signed with the token signing key, not the audit key, after the audit key took over"
                    .to_string()
            } else {
                format!(
                    "the checkpoint is signed by key {}, which is not the audit key",
                    cp.kid
                )
            };
            broken(&mut report, cp.seq, reason);
            return Ok(report);
        };
        if !checkpoint::signature_holds(key, cp) {
            broken(
                &mut report,
                cp.seq,
                "a checkpoint's signature does not verify",
            );
            return Ok(report);
        }
        // Rule 2: the chain under the checkpoint.
        if cp.seq > head_seq {
            broken(
                &mut report,
                head_seq + 1,
                format!(
                    "the log was truncated: a signed checkpoint covers entry {} but the chain ends at {head_seq}",
                    cp.seq
                ),
            );
            return Ok(report);
        }
        let page = store.audit_page(cp.seq - 1, 1).await?;
        if page.first().map(|e| e.hash.as_str()) != Some(cp.head_hash.as_str()) {
            broken(
                &mut report,
                cp.seq,
                "the entry does not match the signed checkpoint taken of it",
            );
            return Ok(report);
        }
        report.last_checkpoint = Some(cp.seq);
    }
    // Rule 3: every row has its line and every line its row.
    if let Some(cp) = rows.iter().find(|r| !lines.iter().any(|l| l.seq == r.seq)) {
        broken(
            &mut report,
            cp.seq,
            format!(
                "the checkpoint at entry {} is in the store but not in the checkpoint file {} (the file was removed or cut)",
                cp.seq,
                checkpoint::CHECKPOINT_FILE
            ),
        );
        return Ok(report);
    }
    if let Some(cp) = lines.iter().find(|l| !rows.iter().any(|r| r.seq == l.seq)) {
        broken(
            &mut report,
            cp.seq,
            format!(
                "the checkpoint at entry {} is in the checkpoint file but its row was deleted from the store",
                cp.seq
            ),
        );
        return Ok(report);
    }
    // Rule 4: coverage.
    if keys.audit.is_some() && first_audit.is_none() {
        broken(
            &mut report,
            0,
            "no checkpoint is signed with the audit key, though the gateway signs one at every start: checkpoints were removed",
        );
        return Ok(report);
    }
    let covered = report.last_checkpoint.unwrap_or(0);
    if covered < head_seq {
        let first = store.audit_page(covered, 1).await?;
        let last = store.audit_page(head_seq - 1, 1).await?;
        let span = match (
            first.first().and_then(|e| parse_stamp(&e.recorded_at)),
            last.first().and_then(|e| parse_stamp(&e.recorded_at)),
        ) {
            (Some(a), Some(b)) => Some((b - a).whole_seconds()),
            _ => None,
        };
        let limit =
            i64::try_from(interval_secs.saturating_add(CHECKPOINT_SLACK_SECS)).unwrap_or(i64::MAX);
        match span {
            Some(span) if span <= limit => {}
            Some(span) => {
                broken(
                    &mut report,
                    covered + 1,
                    format!(
                        "entries {} to {head_seq} span {span}s with no signed checkpoint over them, though the gateway signs one at least every {interval_secs}s: checkpoints were removed",
                        covered + 1
                    ),
                );
                return Ok(report);
            }
            None => {
                broken(
                    &mut report,
                    covered + 1,
                    "the time of the entries after the newest checkpoint cannot be read",
                );
                return Ok(report);
            }
        }
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
