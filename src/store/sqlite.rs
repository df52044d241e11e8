//! The embedded SQLite store: WAL, full sync, one writer connection and a pool of readers.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    Acceptance, AgreementRecord, AlertChange, AuditFilter, Checkpoint, CommunicationFilter,
    CommunicationRecord, ConsentRecord, ConsentWrite, CustodyRecord, DeliveryFilter,
    DeliveryRecord, DeliveryUpdate, EndpointRecord, NewDelivery, NewDocument, Store, StoreError,
    StoredDocument, VersionOutcome, WebhookRecord, WebhookUpdate,
};
use super::{AckKind, MeshAnswer, MeshInboxEffect, MeshInboxEntry, MeshMessageRecord};
use crate::chain::{AuditDraft, AuditEntry};
use crate::clock::{SharedClock, rfc3339};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "throughcare.db";

pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    clock: SharedClock,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and applies migrations.
    pub async fn open(data_dir: &Path, clock: SharedClock) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(DATABASE_FILE);
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            readers,
            clock,
        })
    }

    async fn chain_into(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), StoreError> {
        if drafts.is_empty() {
            return Ok(());
        }
        let head: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut **tx)
                .await?;
        let mut prev = head;
        let recorded_at = rfc3339(self.clock.now());
        for draft in drafts {
            let entry = AuditEntry::chain(
                prev.as_ref().map(|(s, h)| (*s, h.as_str())),
                draft,
                recorded_at.clone(),
            );
            sqlx::query(
                "INSERT INTO audit_log (seq, recorded_at, actor_client, actor_ods, action, outcome, \
                 nhs_number, entities, detail, prev_hash, hash) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(entry.seq)
            .bind(&entry.recorded_at)
            .bind(&entry.actor_client)
            .bind(&entry.actor_ods)
            .bind(&entry.action)
            .bind(&entry.outcome)
            .bind(&entry.nhs_number)
            .bind(&entry.entities)
            .bind(&entry.detail)
            .bind(&entry.prev_hash)
            .bind(&entry.hash)
            .execute(&mut **tx)
            .await?;
            prev = Some((entry.seq, entry.hash));
        }
        Ok(())
    }
}

fn document_from_row(row: &SqliteRow) -> Result<StoredDocument, sqlx::Error> {
    Ok(StoredDocument {
        id: row.try_get("id")?,
        sender_client: row.try_get("sender_client")?,
        sender_ods: row.try_get("sender_ods")?,
        identifier_system: row.try_get("identifier_system")?,
        identifier_value: row.try_get("identifier_value")?,
        content_hash: row.try_get("content_hash")?,
        nhs_number: row.try_get("nhs_number")?,
        event_code: row.try_get("event_code")?,
        event_date: row.try_get("event_date")?,
        received_at: row.try_get("received_at")?,
        receiving_prison_ods: row.try_get("receiving_prison_ods")?,
        body: row.try_get("body")?,
    })
}

fn agreement_from_row(row: &SqliteRow) -> Result<AgreementRecord, sqlx::Error> {
    Ok(AgreementRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        status: row.try_get("status")?,
        body: row.try_get("body")?,
        recorded_at: row.try_get("recorded_at")?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

fn consent_from_row(row: &SqliteRow) -> Result<ConsentRecord, sqlx::Error> {
    Ok(ConsentRecord {
        id: row.try_get("id")?,
        version: row.try_get("version")?,
        nhs_number: row.try_get("nhs_number")?,
        status: row.try_get("status")?,
        body: row.try_get("body")?,
        recorded_at: row.try_get("recorded_at")?,
        recorded_by: row.try_get("recorded_by")?,
    })
}

type WebhookRow = (
    String,
    String,
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn webhook_from_row(r: WebhookRow) -> WebhookRecord {
    let (
        id,
        delivery_id,
        body,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        updated_at,
    ) = r;
    WebhookRecord {
        id,
        delivery_id,
        body,
        status,
        attempts,
        next_attempt_at,
        last_error,
        created_at,
        updated_at,
    }
}

fn mesh_message_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<MeshMessageRecord, sqlx::Error> {
    Ok(MeshMessageRecord {
        delivery_id: row.try_get("delivery_id")?,
        message_id: row.try_get("message_id")?,
        document_identifier: row.try_get("document_identifier")?,
        sender_reference: row.try_get("sender_reference")?,
        to_mailbox: row.try_get("to_mailbox")?,
        workflow: row.try_get("workflow")?,
        mesh_message_id: row.try_get("mesh_message_id")?,
        sent_at: row.try_get("sent_at")?,
        infrastructure_code: row.try_get("infrastructure_code")?,
        infrastructure_at: row.try_get("infrastructure_at")?,
        business_code: row.try_get("business_code")?,
        business_at: row.try_get("business_at")?,
        infrastructure_due: row.try_get("infrastructure_due")?,
        business_due: row.try_get("business_due")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn delivery_from_row(row: &SqliteRow) -> Result<DeliveryRecord, sqlx::Error> {
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        document_id: row.try_get("document_id")?,
        nhs_number: row.try_get("nhs_number")?,
        sender_ods: row.try_get("sender_ods")?,
        recipient_ods: row.try_get("recipient_ods")?,
        recipient_role: row.try_get("recipient_role")?,
        relationships: row.try_get("relationships")?,
        needs_gp_registration: row.try_get("needs_gp_registration")?,
        status: parsed(row, "status")?,
        business_status: parsed(row, "business_status")?,
        reason_code: row.try_get("reason_code")?,
        reason: row.try_get("reason")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        claimed_until: row.try_get("claimed_until")?,
        release_date: row.try_get("release_date")?,
        at_risk: row.try_get("at_risk")?,
        last_status_code: row.try_get("last_status_code")?,
        loss_report: row.try_get("loss_report")?,
        continuity_critical: row.try_get("continuity_critical")?,
        lead_time_days: row.try_get("lead_time_days")?,
        alert_state: row.try_get("alert_state")?,
        alerted_at: row.try_get("alerted_at")?,
        warnings: row.try_get("warnings")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A column holding one of the gateway's string enums.
fn parsed<T: std::str::FromStr<Err = String>>(
    row: &SqliteRow,
    column: &str,
) -> Result<T, sqlx::Error> {
    let text: String = row.try_get(column)?;
    text.parse::<T>().map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_string(),
        source: e.into(),
    })
}

fn endpoint_from_row(row: &SqliteRow) -> Result<EndpointRecord, sqlx::Error> {
    Ok(EndpointRecord {
        ods: row.try_get("ods")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        profile: row.try_get("profile")?,
        auth: row.try_get("auth")?,
        mailbox: row.try_get("mailbox")?,
        workflow: row.try_get("workflow")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn entry_from_row(row: &SqliteRow) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        seq: row.try_get("seq")?,
        recorded_at: row.try_get("recorded_at")?,
        actor_client: row.try_get("actor_client")?,
        actor_ods: row.try_get("actor_ods")?,
        action: row.try_get("action")?,
        outcome: row.try_get("outcome")?,
        nhs_number: row.try_get("nhs_number")?,
        entities: row.try_get("entities")?,
        detail: row.try_get("detail")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn accept_document(
        &self,
        doc: NewDocument,
        deliveries: Vec<NewDelivery>,
        audit: Vec<AuditDraft>,
    ) -> Result<Acceptance, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existing: Option<(String, String)> = sqlx::query_as(
            "SELECT id, content_hash FROM documents \
             WHERE sender_ods = ? AND identifier_system = ? AND identifier_value = ?",
        )
        .bind(&doc.sender_ods)
        .bind(&doc.identifier_system)
        .bind(&doc.identifier_value)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((id, hash)) = existing {
            tx.rollback().await?;
            return Ok(if hash == doc.content_hash {
                Acceptance::Repeat { id }
            } else {
                Acceptance::Conflict { id }
            });
        }
        sqlx::query(
            "INSERT INTO documents (id, sender_client, sender_ods, identifier_system, \
             identifier_value, content_hash, nhs_number, event_code, event_date, received_at, \
             receiving_prison_ods, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&doc.id)
        .bind(&doc.sender_client)
        .bind(&doc.sender_ods)
        .bind(&doc.identifier_system)
        .bind(&doc.identifier_value)
        .bind(&doc.content_hash)
        .bind(&doc.nhs_number)
        .bind(&doc.event_code)
        .bind(&doc.event_date)
        .bind(&doc.received_at)
        .bind(&doc.receiving_prison_ods)
        .bind(&doc.body)
        .execute(&mut *tx)
        .await?;
        for d in &deliveries {
            sqlx::query(
                "INSERT INTO deliveries (id, document_id, nhs_number, sender_ods, recipient_ods, \
                 recipient_role, relationships, needs_gp_registration, status, business_status, \
                 reason_code, reason, next_attempt_at, release_date, loss_report, warnings, \
                 created_at, updated_at, continuity_critical, lead_time_days) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&d.id)
            .bind(&doc.id)
            .bind(&doc.nhs_number)
            .bind(&doc.sender_ods)
            .bind(&d.recipient_ods)
            .bind(&d.recipient_role)
            .bind(&d.relationships)
            .bind(d.needs_gp_registration)
            .bind(d.status.as_str())
            .bind(d.business_status.as_str())
            .bind(&d.reason_code)
            .bind(&d.reason)
            .bind(&d.next_attempt_at)
            .bind(&d.release_date)
            .bind(&d.loss_report)
            .bind(&d.warnings)
            .bind(&doc.received_at)
            .bind(&doc.received_at)
            .bind(d.continuity_critical)
            .bind(d.lead_time_days)
            .execute(&mut *tx)
            .await?;
        }
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Acceptance::Created { id: doc.id })
    }

    async fn document_by_identifier(
        &self,
        sender_ods: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM documents WHERE sender_ods = ? AND identifier_system = ? \
             AND identifier_value = ?",
        )
        .bind(sender_ods)
        .bind(system)
        .bind(value)
        .fetch_optional(&self.readers)
        .await?;
        Ok(row.as_ref().map(document_from_row).transpose()?)
    }

    async fn cancel_deliveries(
        &self,
        document_id: &str,
        reason: &str,
        reason_code: &str,
        now: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE deliveries SET status = 'cancelled', business_status = 'replaced', \
             reason = ?, reason_code = ?, next_attempt_at = NULL, claimed_until = NULL, \
             updated_at = ? WHERE document_id = ? AND status IN ('requested', 'failed', 'on-hold') \
             RETURNING *",
        )
        .bind(reason)
        .bind(reason_code)
        .bind(now)
        .bind(document_id)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn document(&self, id: &str) -> Result<Option<StoredDocument>, StoreError> {
        let row = sqlx::query("SELECT * FROM documents WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.as_ref().map(document_from_row).transpose()?)
    }

    async fn documents_for(&self, nhs_number: &str) -> Result<Vec<StoredDocument>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM documents WHERE nhs_number = ? ORDER BY received_at DESC, rowid DESC",
        )
        .bind(nhs_number)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(document_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn custody_records(&self, nhs_number: &str) -> Result<Vec<CustodyRecord>, StoreError> {
        let rows: Vec<(String, String, Option<String>, String)> = sqlx::query_as(
            "SELECT sender_ods, event_code, receiving_prison_ods, received_at FROM documents \
             WHERE nhs_number = ? ORDER BY received_at DESC, rowid DESC",
        )
        .bind(nhs_number)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(sender_ods, event_code, receiving_prison_ods, received_at)| CustodyRecord {
                    sender_ods,
                    event_code,
                    receiving_prison_ods,
                    received_at,
                },
            )
            .collect())
    }

    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        self.chain_into(&mut tx, drafts).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(n) = &f.nhs_number {
            qb.push(" AND nhs_number = ").push_bind(n.clone());
        }
        if let Some(s) = &f.since {
            qb.push(" AND recorded_at >= ").push_bind(s.clone());
        }
        if let Some(u) = &f.until {
            qb.push(" AND recorded_at < ").push_bind(u.clone());
        }
        if let Some(a) = &f.agent {
            qb.push(" AND (actor_client = ").push_bind(a.clone());
            qb.push(" OR actor_ods = ").push_bind(a.clone()).push(")");
        }
        if let Some(e) = &f.entity {
            // Entities are stored as a JSON array of strings.
            qb.push(" AND EXISTS (SELECT 1 FROM json_each(audit_log.entities) WHERE value = ")
                .push_bind(e.clone())
                .push(" OR value LIKE ")
                .push_bind(format!("{}/_history/%", e.replace('%', "")))
                .push(")");
        }
        if let Some(actions) = &f.actions {
            if actions.is_empty() {
                return Ok(Vec::new());
            }
            qb.push(" AND action IN (");
            let mut sep = qb.separated(", ");
            for a in actions {
                sep.push_bind(a.clone());
            }
            qb.push(")");
        }
        if let Some(o) = &f.outcome {
            qb.push(" AND outcome = ").push_bind(o.clone());
        }
        qb.push(" ORDER BY seq DESC LIMIT ")
            .push_bind(f.limit.clamp(1, 1000));
        let rows = qb.build().fetch_all(&self.readers).await?;
        Ok(rows.iter().map(entry_from_row).collect::<Result<_, _>>()?)
    }

    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM used_assertions WHERE expires_at < ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn put_agreement(
        &self,
        record: AgreementRecord,
        audit: Vec<AuditDraft>,
    ) -> Result<VersionOutcome, StoreError> {
        let mut tx = self.writer.begin().await?;
        let existing: Option<(String,)> =
            sqlx::query_as("SELECT body FROM agreements WHERE id = ? AND version = ?")
                .bind(&record.id)
                .bind(record.version)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((body,)) = existing {
            tx.rollback().await?;
            return Ok(if body == record.body {
                VersionOutcome::Unchanged
            } else {
                VersionOutcome::Conflict
            });
        }
        sqlx::query(
            "INSERT INTO agreements (id, version, status, body, recorded_at, recorded_by) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&record.id)
        .bind(record.version)
        .bind(&record.status)
        .bind(&record.body)
        .bind(&record.recorded_at)
        .bind(&record.recorded_by)
        .execute(&mut *tx)
        .await?;
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(VersionOutcome::Stored)
    }

    async fn agreement_versions(
        &self,
        id: Option<&str>,
    ) -> Result<Vec<AgreementRecord>, StoreError> {
        let rows = match id {
            Some(id) => {
                sqlx::query("SELECT * FROM agreements WHERE id = ? ORDER BY id, version")
                    .bind(id)
                    .fetch_all(&self.readers)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM agreements ORDER BY id, version")
                    .fetch_all(&self.readers)
                    .await?
            }
        };
        Ok(rows
            .iter()
            .map(agreement_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn put_consent(
        &self,
        consent: ConsentWrite<'_>,
        render: &(dyn Fn(i64) -> String + Send + Sync),
        audit: &(dyn Fn(i64) -> Vec<AuditDraft> + Send + Sync),
    ) -> Result<i64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let (max,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM consents WHERE id = ?")
                .bind(consent.id)
                .fetch_one(&mut *tx)
                .await?;
        let version = max.unwrap_or(0) + 1;
        sqlx::query(
            "INSERT INTO consents (id, version, nhs_number, status, body, recorded_at, recorded_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(consent.id)
        .bind(version)
        .bind(consent.nhs_number)
        .bind(consent.status)
        .bind(render(version))
        .bind(consent.recorded_at)
        .bind(consent.recorded_by)
        .execute(&mut *tx)
        .await?;
        self.chain_into(&mut tx, audit(version)).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn consent(&self, id: &str) -> Result<Option<ConsentRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM consents WHERE id = ? ORDER BY version DESC LIMIT 1")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.as_ref().map(consent_from_row).transpose()?)
    }

    async fn consents_for(&self, nhs_number: &str) -> Result<Vec<ConsentRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.* FROM consents c WHERE c.nhs_number = ? AND c.version = \
             (SELECT MAX(version) FROM consents d WHERE d.id = c.id) ORDER BY c.id",
        )
        .bind(nhs_number)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(consent_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    async fn add_checkpoint(&self, c: Checkpoint) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, head_hash, signed_at, kid, signature) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(c.seq)
        .bind(&c.head_hash)
        .bind(&c.signed_at)
        .bind(&c.kid)
        .bind(&c.signature)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT seq, head_hash, signed_at, kid, signature FROM audit_checkpoints ORDER BY seq",
        )
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(seq, head_hash, signed_at, kid, signature)| Checkpoint {
                seq,
                head_hash,
                signed_at,
                kid,
                signature,
            })
            .collect())
    }

    async fn claim_due(
        &self,
        now: &str,
        lease_until: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let rows = sqlx::query(
            "UPDATE deliveries SET status = 'in-progress', claimed_until = ?, \
             attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM deliveries \
               WHERE status IN ('requested', 'in-progress') AND next_attempt_at IS NOT NULL \
               AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) \
               ORDER BY next_attempt_at LIMIT ?) \
             RETURNING *",
        )
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn finish_delivery(
        &self,
        id: &str,
        u: DeliveryUpdate,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET status = ?, business_status = ?, reason_code = ?, reason = ?, \
             next_attempt_at = ?, last_status_code = ?, loss_report = COALESCE(?, loss_report), \
             warnings = COALESCE(?, warnings), updated_at = ?, claimed_until = NULL \
             WHERE id = ? AND status <> 'completed'",
        )
        .bind(u.status.as_str())
        .bind(u.business_status.as_str())
        .bind(&u.reason_code)
        .bind(&u.reason)
        .bind(&u.next_attempt_at)
        .bind(u.last_status_code)
        .bind(&u.loss_report)
        .bind(&u.warnings)
        .bind(&u.updated_at)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.as_ref().map(delivery_from_row).transpose()?)
    }

    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("SELECT * FROM deliveries WHERE 1 = 1");
        if let Some(v) = &f.document_id {
            qb.push(" AND document_id = ").push_bind(v.clone());
        }
        if let Some(v) = &f.recipient_ods {
            qb.push(" AND recipient_ods = ").push_bind(v.clone());
        }
        if let Some(v) = &f.party_ods {
            qb.push(" AND (recipient_ods = ").push_bind(v.clone());
            qb.push(" OR sender_ods = ").push_bind(v.clone()).push(")");
        }
        if let Some(v) = &f.status {
            qb.push(" AND status = ").push_bind(v.as_str());
        }
        if let Some(v) = &f.business_status {
            qb.push(" AND business_status = ").push_bind(v.as_str());
        }
        if let Some(v) = f.at_risk {
            qb.push(" AND at_risk = ").push_bind(v);
        }
        match f.escalated {
            Some(true) => {
                qb.push(" AND alert_state IS NOT NULL");
            }
            Some(false) => {
                qb.push(" AND alert_state IS NULL");
            }
            None => {}
        }
        if let Some(v) = &f.updated_since {
            qb.push(" AND updated_at >= ").push_bind(v.clone());
        }
        qb.push(" ORDER BY updated_at DESC, id LIMIT ")
            .push_bind(f.limit.clamp(1, 1000));
        let rows = qb.build().fetch_all(&self.readers).await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn requeue_delivery(
        &self,
        id: &str,
        now: &str,
        audit: Vec<AuditDraft>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let changed = sqlx::query(
            "UPDATE deliveries SET status = 'requested', business_status = 'scheduled', \
             attempts = 0, next_attempt_at = ?, claimed_until = NULL, updated_at = ?, reason = NULL, reason_code = NULL \
             WHERE id = ? AND status IN ('failed', 'on-hold')",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        // A replayed delivery over MESH goes as a new ITK3 message (new ids, due times and
        // acknowledgements): the one that failed was refused or undeliverable, and its
        // acknowledgements must not answer for the new one. (A resend after a crash or a
        // retryable failure keeps the message: that row is not touched there.)
        sqlx::query("DELETE FROM mesh_messages WHERE delivery_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn mark_at_risk(
        &self,
        cutoff: &str,
        now: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE deliveries SET at_risk = 1, updated_at = ? \
             WHERE at_risk = 0 AND status IN ('requested', 'in-progress', 'failed', 'on-hold') \
             AND release_date IS NOT NULL AND release_date < ? RETURNING *",
        )
        .bind(now)
        .bind(cutoff)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn escalations(
        &self,
        now: &str,
        default_lead_days: i64,
    ) -> Result<Vec<(DeliveryRecord, Option<String>)>, StoreError> {
        // The release date (a date, or a dateTime with an offset) less the lead time, as a
        // stored stamp (UTC, three fraction digits), compared with now.
        let rows = sqlx::query(
            "SELECT * FROM (SELECT *, CASE \
               WHEN status = 'on-hold' THEN 'held' \
               WHEN status = 'failed' AND business_status = 'dead-letter' THEN 'dead-letter' \
               WHEN status = 'failed' THEN 'failed' \
               WHEN status = 'completed' AND EXISTS (SELECT 1 FROM mesh_messages m \
                 WHERE m.delivery_id = deliveries.id AND m.business_code = '30004') \
                 THEN 'recently-deceased' \
               WHEN status = 'in-progress' AND EXISTS (SELECT 1 FROM mesh_messages m \
                 WHERE m.delivery_id = deliveries.id AND m.sent_at IS NOT NULL AND \
                 ((m.infrastructure_code IS NULL AND m.infrastructure_due <= ?) OR \
                  (m.business_code IS NULL AND m.business_due <= ?))) \
                 THEN 'unacknowledged' \
               WHEN status IN ('requested', 'in-progress') AND release_date IS NOT NULL \
                 AND strftime('%Y-%m-%dT%H:%M:%fZ', release_date, \
                       '-' || COALESCE(lead_time_days, ?) || ' days') <= ? \
                 THEN 'undelivered-near-release' \
               ELSE NULL END AS escalation FROM deliveries \
               WHERE status IN ('requested', 'in-progress', 'on-hold', 'failed') \
                  OR alert_state IS NOT NULL \
                  OR id IN (SELECT delivery_id FROM mesh_messages WHERE business_code = '30004')) \
             WHERE escalation IS NOT alert_state \
               AND NOT (COALESCE(escalation IN ('unacknowledged', 'undelivered-near-release'), 0) \
                        AND COALESCE(alert_state IN ('unacknowledged', 'undelivered-near-release'), 0)) \
             ORDER BY created_at, id",
        )
        .bind(now)
        .bind(now)
        .bind(default_lead_days)
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| Ok((delivery_from_row(row)?, row.try_get("escalation")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn change_alerts(
        &self,
        changes: Vec<AlertChange>,
        now: &str,
    ) -> Result<Vec<AlertChange>, StoreError> {
        if changes.is_empty() {
            return Ok(changes);
        }
        let mut tx = self.writer.begin().await?;
        let mut written = Vec::with_capacity(changes.len());
        let mut audit = Vec::new();
        for c in changes {
            let raised = c.to.is_some();
            let changed = sqlx::query(
                "UPDATE deliveries SET alert_state = ?, \
                 alerted_at = CASE WHEN ? THEN ? ELSE alerted_at END, \
                 at_risk = CASE WHEN ? THEN 1 ELSE at_risk END, \
                 updated_at = CASE WHEN ? THEN ? ELSE updated_at END \
                 WHERE id = ? AND alert_state IS ?",
            )
            .bind(&c.to)
            .bind(raised)
            .bind(now)
            .bind(raised)
            .bind(raised)
            .bind(now)
            .bind(&c.delivery_id)
            .bind(&c.from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed == 0 {
                continue;
            }
            if let Some(m) = &c.communication {
                sqlx::query(
                    "INSERT INTO communications (id, delivery_id, sender_ods, state, sent, body) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&m.id)
                .bind(&c.delivery_id)
                .bind(&m.sender_ods)
                .bind(&m.state)
                .bind(&m.sent)
                .bind(&m.body)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(w) = &c.webhook {
                sqlx::query(
                    "INSERT INTO alert_webhooks (id, delivery_id, body, status, attempts, \
                     next_attempt_at, created_at, updated_at) \
                     VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
                )
                .bind(&w.id)
                .bind(&c.delivery_id)
                .bind(&w.body)
                .bind(now)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            audit.extend(c.audit.iter().cloned());
            written.push(c);
        }
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(written)
    }

    async fn communications(
        &self,
        f: &CommunicationFilter,
    ) -> Result<Vec<CommunicationRecord>, StoreError> {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT id, delivery_id, sender_ods, state, sent, body FROM communications WHERE 1 = 1",
        );
        if let Some(v) = &f.sender_ods {
            qb.push(" AND sender_ods = ").push_bind(v.clone());
        }
        if let Some(v) = &f.state {
            qb.push(" AND state = ").push_bind(v.clone());
        }
        if let Some(v) = &f.since {
            qb.push(" AND sent >= ").push_bind(v.clone());
        }
        if let Some(v) = &f.until {
            qb.push(" AND sent < ").push_bind(v.clone());
        }
        qb.push(" ORDER BY sent DESC, id LIMIT ")
            .push_bind(f.limit.clamp(1, 1000));
        let rows: Vec<(String, String, String, String, String, String)> =
            qb.build_query_as().fetch_all(&self.readers).await?;
        Ok(rows
            .into_iter()
            .map(
                |(id, delivery_id, sender_ods, state, sent, body)| CommunicationRecord {
                    id,
                    delivery_id,
                    sender_ods,
                    state,
                    sent,
                    body,
                },
            )
            .collect())
    }

    async fn escalation_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT alert_state, COUNT(*) FROM deliveries WHERE alert_state IS NOT NULL \
             GROUP BY alert_state",
        )
        .fetch_all(&self.readers)
        .await?)
    }

    async fn claim_webhooks(
        &self,
        now: &str,
        lease_until: &str,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, StoreError> {
        let rows: Vec<WebhookRow> = sqlx::query_as(
            "UPDATE alert_webhooks SET claimed_until = ?, attempts = attempts + 1, updated_at = ? \
             WHERE id IN (SELECT id FROM alert_webhooks WHERE status = 'pending' \
               AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) \
               ORDER BY next_attempt_at LIMIT ?) \
             RETURNING id, delivery_id, body, status, attempts, next_attempt_at, last_error, \
               created_at, updated_at",
        )
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.writer)
        .await?;
        Ok(rows.into_iter().map(webhook_from_row).collect())
    }

    async fn finish_webhook(&self, id: &str, u: WebhookUpdate) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_webhooks SET status = ?, next_attempt_at = ?, last_error = ?, \
             updated_at = ?, claimed_until = NULL WHERE id = ?",
        )
        .bind(&u.status)
        .bind(&u.next_attempt_at)
        .bind(&u.last_error)
        .bind(&u.updated_at)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn delivery_counts(&self) -> Result<(Vec<(String, String, i64)>, i64), StoreError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT status, business_status, COUNT(*) FROM deliveries GROUP BY status, business_status",
        )
        .fetch_all(&self.readers)
        .await?;
        let (at_risk,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM deliveries WHERE at_risk = 1 AND status IN ('requested', 'in-progress', 'failed', 'on-hold')",
        )
        .fetch_one(&self.readers)
        .await?;
        Ok((rows, at_risk))
    }

    async fn release_claims(&self) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE deliveries SET claimed_until = NULL WHERE claimed_until IS NOT NULL",
        )
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    async fn renew_claims(&self, ids: &[String], until: &str) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("UPDATE deliveries SET claimed_until = ");
        qb.push_bind(until.to_string());
        qb.push(" WHERE claimed_until IS NOT NULL AND status = 'in-progress' AND id IN (");
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(id.clone());
        }
        qb.push(")");
        Ok(qb.build().execute(&self.writer).await?.rows_affected())
    }

    async fn put_endpoint(
        &self,
        e: EndpointRecord,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO endpoints (ods, kind, url, profile, auth, mailbox, workflow, updated_at, \
             updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ods) DO UPDATE SET \
             kind = excluded.kind, url = excluded.url, profile = excluded.profile, \
             auth = excluded.auth, mailbox = excluded.mailbox, workflow = excluded.workflow, \
             updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&e.ods)
        .bind(&e.kind)
        .bind(&e.url)
        .bind(&e.profile)
        .bind(&e.auth)
        .bind(&e.mailbox)
        .bind(&e.workflow)
        .bind(&e.updated_at)
        .bind(&e.updated_by)
        .execute(&mut *tx)
        .await?;
        // Copies waiting for a pull can now be pushed.
        sqlx::query(
            "UPDATE deliveries SET business_status = 'scheduled', next_attempt_at = ?, updated_at = ?, \
             reason = NULL, reason_code = NULL \
             WHERE recipient_ods = ? AND status = 'requested' AND business_status = 'awaiting-pull'",
        )
        .bind(&e.updated_at)
        .bind(&e.updated_at)
        .bind(&e.ods)
        .execute(&mut *tx)
        .await?;
        self.chain_into(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn endpoint(&self, ods: &str) -> Result<Option<EndpointRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM endpoints WHERE ods = ?")
            .bind(ods)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.as_ref().map(endpoint_from_row).transpose()?)
    }

    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM endpoints ORDER BY ods")
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .iter()
            .map(endpoint_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn mesh_message(
        &self,
        delivery_id: &str,
    ) -> Result<Option<MeshMessageRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM mesh_messages WHERE delivery_id = ?")
            .bind(delivery_id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.as_ref().map(mesh_message_from_row).transpose()?)
    }

    async fn start_mesh_message(
        &self,
        r: MeshMessageRecord,
    ) -> Result<MeshMessageRecord, StoreError> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO mesh_messages (delivery_id, message_id, document_identifier, \
             sender_reference, to_mailbox, workflow, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET \
             message_id = excluded.message_id, document_identifier = excluded.document_identifier, \
             sender_reference = excluded.sender_reference, to_mailbox = excluded.to_mailbox, \
             workflow = excluded.workflow, mesh_message_id = NULL, sent_at = NULL, \
             infrastructure_code = NULL, infrastructure_at = NULL, business_code = NULL, \
             business_at = NULL, infrastructure_due = NULL, business_due = NULL, \
             created_at = excluded.created_at, updated_at = excluded.updated_at \
             WHERE mesh_messages.to_mailbox <> excluded.to_mailbox \
                OR mesh_messages.workflow <> excluded.workflow",
        )
        .bind(&r.delivery_id)
        .bind(&r.message_id)
        .bind(&r.document_identifier)
        .bind(&r.sender_reference)
        .bind(&r.to_mailbox)
        .bind(&r.workflow)
        .bind(&r.created_at)
        .bind(&r.updated_at)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT * FROM mesh_messages WHERE delivery_id = ?")
            .bind(&r.delivery_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(mesh_message_from_row(&row)?)
    }

    async fn mesh_message_sent(
        &self,
        delivery_id: &str,
        mesh_message_id: &str,
        sent_at: &str,
        infrastructure_due: &str,
        business_due: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mesh_messages SET mesh_message_id = ?, sent_at = ?, \
             infrastructure_due = COALESCE(infrastructure_due, ?), \
             business_due = COALESCE(business_due, ?), updated_at = ? WHERE delivery_id = ?",
        )
        .bind(mesh_message_id)
        .bind(sent_at)
        .bind(infrastructure_due)
        .bind(business_due)
        .bind(sent_at)
        .bind(delivery_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn mesh_message_answered(
        &self,
        message_id: Option<&str>,
        sender_reference: Option<&str>,
    ) -> Result<Option<MeshMessageRecord>, StoreError> {
        for (sql, value) in [
            (
                "SELECT * FROM mesh_messages WHERE message_id = ?",
                message_id,
            ),
            (
                "SELECT * FROM mesh_messages WHERE sender_reference = ?",
                sender_reference,
            ),
        ] {
            let Some(value) = value else { continue };
            let row = sqlx::query(sql)
                .bind(value)
                .fetch_optional(&self.readers)
                .await?;
            if let Some(row) = row {
                return Ok(Some(mesh_message_from_row(&row)?));
            }
        }
        Ok(None)
    }

    async fn mesh_overdue(&self, now: &str) -> Result<Vec<MeshMessageRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.* FROM mesh_messages m JOIN deliveries d ON d.id = m.delivery_id \
             WHERE d.status IN ('in-progress', 'requested') AND m.sent_at IS NOT NULL AND \
             ((m.infrastructure_code IS NULL AND m.infrastructure_due <= ?) OR \
              (m.business_code IS NULL AND m.business_due <= ?))",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(mesh_message_from_row)
            .collect::<Result<_, _>>()?)
    }

    async fn mesh_inbox_handled(&self, mesh_message_id: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM mesh_inbox WHERE mesh_message_id = ?")
            .bind(mesh_message_id)
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.is_some())
    }

    async fn handle_mesh_inbox(
        &self,
        entry: MeshInboxEntry,
        effect: MeshInboxEffect,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO mesh_inbox (mesh_message_id, message_type, outcome, delivery_id, \
             received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (mesh_message_id) DO NOTHING",
        )
        .bind(&entry.mesh_message_id)
        .bind(&entry.message_type)
        .bind(&entry.outcome)
        .bind(&entry.delivery_id)
        .bind(&entry.received_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        if let Some((delivery_id, kind, code)) = &effect.acknowledgement {
            let sql = match kind {
                AckKind::Infrastructure => {
                    "UPDATE mesh_messages SET infrastructure_code = ?, infrastructure_at = ?, \
                     updated_at = ? WHERE delivery_id = ?"
                }
                AckKind::Business => {
                    "UPDATE mesh_messages SET business_code = ?, business_at = ?, \
                     updated_at = ? WHERE delivery_id = ?"
                }
            };
            sqlx::query(sql)
                .bind(code)
                .bind(&entry.received_at)
                .bind(&entry.received_at)
                .bind(delivery_id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some((id, u)) = &effect.delivery {
            sqlx::query(
                "UPDATE deliveries SET status = ?, business_status = ?, reason_code = ?, \
                 reason = ?, next_attempt_at = ?, last_status_code = ?, \
                 loss_report = COALESCE(?, loss_report), warnings = COALESCE(?, warnings), \
                 updated_at = ?, claimed_until = NULL \
                 WHERE id = ? AND status NOT IN ('completed', 'cancelled')",
            )
            .bind(u.status.as_str())
            .bind(u.business_status.as_str())
            .bind(&u.reason_code)
            .bind(&u.reason)
            .bind(&u.next_attempt_at)
            .bind(u.last_status_code)
            .bind(&u.loss_report)
            .bind(&u.warnings)
            .bind(&u.updated_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        if let Some(a) = &effect.answer {
            sqlx::query(
                "INSERT INTO mesh_outbox (id, to_mailbox, workflow, body, status, attempts, \
                 next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&a.id)
            .bind(&a.to_mailbox)
            .bind(&a.workflow)
            .bind(&a.body)
            .bind(&entry.received_at)
            .bind(&entry.received_at)
            .bind(&entry.received_at)
            .execute(&mut *tx)
            .await?;
        }
        self.chain_into(&mut tx, effect.audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn due_mesh_answers(&self, now: &str, limit: i64) -> Result<Vec<MeshAnswer>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, to_mailbox, workflow, body, attempts FROM mesh_outbox \
             WHERE status = 'pending' AND next_attempt_at <= ? ORDER BY created_at LIMIT ?",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.readers)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MeshAnswer {
                    id: row.try_get("id")?,
                    to_mailbox: row.try_get("to_mailbox")?,
                    workflow: row.try_get("workflow")?,
                    body: row.try_get("body")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    async fn finish_mesh_answer(
        &self,
        id: &str,
        sent: bool,
        next_attempt_at: Option<&str>,
        error: Option<&str>,
        now: &str,
    ) -> Result<(), StoreError> {
        let status = match (sent, next_attempt_at) {
            (true, _) => "sent",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        sqlx::query(
            "UPDATE mesh_outbox SET status = ?, attempts = attempts + 1, next_attempt_at = ?, \
             last_error = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status)
        .bind(next_attempt_at)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: &str,
        until: &str,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(
            "INSERT INTO leases (name, holder, until) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
             WHERE leases.holder = excluded.holder OR leases.until < ?",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn close(&self) {
        self.readers.close().await;
        self.writer.close().await;
    }
}

#[cfg(test)]
mod mesh_tests {
    use super::*;
    use crate::domain::{BusinessStatus, TaskStatus};
    use crate::store::AlertChange;

    async fn store_with_delivery() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), std::sync::Arc::new(crate::clock::SystemClock))
            .await
            .unwrap();
        let doc = NewDocument {
            id: "doc-1".into(),
            sender_client: "prison".into(),
            sender_ods: "Y02307".into(),
            identifier_system: "urn:x".into(),
            identifier_value: "1".into(),
            content_hash: "h".into(),
            nhs_number: "9990000018".into(),
            event_code: "release".into(),
            event_date: Some("2026-12-20".into()),
            received_at: "2026-12-07T10:00:00.000Z".into(),
            receiving_prison_ods: None,
            body: b"{}".to_vec(),
        };
        let delivery = NewDelivery {
            id: "del-1".into(),
            recipient_ods: "A99001".into(),
            recipient_role: "gp".into(),
            relationships: "[]".into(),
            needs_gp_registration: false,
            status: TaskStatus::InProgress,
            business_status: BusinessStatus::AwaitingAcknowledgement,
            reason_code: None,
            reason: None,
            next_attempt_at: None,
            release_date: Some("2026-12-20".into()),
            loss_report: None,
            continuity_critical: false,
            lead_time_days: None,
            warnings: None,
        };
        store
            .accept_document(doc, vec![delivery], Vec::new())
            .await
            .unwrap();
        (dir, store)
    }

    fn message(id: &str) -> MeshMessageRecord {
        MeshMessageRecord {
            delivery_id: "del-1".into(),
            message_id: id.into(),
            document_identifier: format!("doc-{id}"),
            sender_reference: format!("ref-{id}"),
            to_mailbox: "X26ABC2".into(),
            workflow: "TOC_FHIR_IP_DISCH".into(),
            mesh_message_id: None,
            sent_at: None,
            infrastructure_code: None,
            infrastructure_at: None,
            business_code: None,
            business_at: None,
            infrastructure_due: None,
            business_due: None,
            created_at: "2026-12-07T10:00:00.000Z".into(),
            updated_at: "2026-12-07T10:00:00.000Z".into(),
        }
    }

    #[tokio::test]
    async fn a_resend_reuses_the_ids_of_the_first_send() {
        let (_dir, store) = store_with_delivery().await;
        let first = store.start_mesh_message(message("m-1")).await.unwrap();
        let again = store.start_mesh_message(message("m-2")).await.unwrap();
        assert_eq!(again.message_id, "m-1");
        assert_eq!(again.sender_reference, first.sender_reference);
        store
            .mesh_message_sent(
                "del-1",
                "mesh-1",
                "2026-12-07T10:00:01.000Z",
                "2026-12-07T11:00:01.000Z",
                "2026-12-09T10:00:01.000Z",
            )
            .await
            .unwrap();
        // By MessageHeader id, else by SenderReference.
        let by_id = store
            .mesh_message_answered(Some("m-1"), None)
            .await
            .unwrap();
        assert_eq!(by_id.unwrap().mesh_message_id.as_deref(), Some("mesh-1"));
        let by_ref = store
            .mesh_message_answered(Some("unknown"), Some("ref-m-1"))
            .await
            .unwrap();
        assert_eq!(by_ref.unwrap().delivery_id, "del-1");
        assert!(
            store
                .mesh_message_answered(Some("x"), Some("y"))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_inbox_message_is_handled_once_and_acknowledgements_clear_what_is_overdue() {
        let (_dir, store) = store_with_delivery().await;
        store.start_mesh_message(message("m-1")).await.unwrap();
        store
            .mesh_message_sent(
                "del-1",
                "mesh-1",
                "2026-12-07T10:00:01.000Z",
                "2026-12-07T11:00:01.000Z",
                "2026-12-09T10:00:01.000Z",
            )
            .await
            .unwrap();
        assert!(
            store
                .mesh_overdue("2026-12-07T10:30:00.000Z")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .mesh_overdue("2026-12-07T11:30:00.000Z")
                .await
                .unwrap()
                .len(),
            1,
            "no infrastructure acknowledgement after an hour"
        );
        let entry = MeshInboxEntry {
            mesh_message_id: "in-1".into(),
            message_type: "DATA".into(),
            outcome: "infrastructure-ack 20013".into(),
            delivery_id: Some("del-1".into()),
            received_at: "2026-12-07T10:05:00.000Z".into(),
        };
        let effect = MeshInboxEffect {
            acknowledgement: Some(("del-1".into(), AckKind::Infrastructure, "20013".into())),
            ..Default::default()
        };
        assert!(
            store
                .handle_mesh_inbox(entry.clone(), effect.clone())
                .await
                .unwrap()
        );
        assert!(!store.handle_mesh_inbox(entry, effect).await.unwrap());
        assert!(store.mesh_inbox_handled("in-1").await.unwrap());
        assert!(
            store
                .mesh_overdue("2026-12-07T11:30:00.000Z")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store
                .mesh_overdue("2026-12-09T11:00:00.000Z")
                .await
                .unwrap()
                .len(),
            1,
            "no business acknowledgement after its due time"
        );
    }

    #[tokio::test]
    async fn an_answer_is_queued_with_the_message_it_answers_once_and_retried_until_sent() {
        let (_dir, store) = store_with_delivery().await;
        let entry = MeshInboxEntry {
            mesh_message_id: "in-2".into(),
            message_type: "DATA".into(),
            outcome: "itk business 30001".into(),
            delivery_id: None,
            received_at: "2026-12-07T10:00:00.000Z".into(),
        };
        let effect = MeshInboxEffect {
            answer: Some(MeshAnswer {
                id: "ans-1".into(),
                to_mailbox: "GPPRAC01".into(),
                workflow: "TOC_FHIR_IP_DISCH_ACK".into(),
                body: b"<Bundle/>".to_vec(),
                attempts: 0,
            }),
            ..Default::default()
        };
        assert!(
            store
                .handle_mesh_inbox(entry.clone(), effect.clone())
                .await
                .unwrap()
        );
        assert!(
            !store.handle_mesh_inbox(entry, effect).await.unwrap(),
            "once"
        );
        let due = store
            .due_mesh_answers("2026-12-07T10:00:01.000Z", 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].body, b"<Bundle/>");
        store
            .finish_mesh_answer(
                "ans-1",
                false,
                Some("2026-12-07T10:05:00.000Z"),
                Some("MESH down"),
                "2026-12-07T10:00:01.000Z",
            )
            .await
            .unwrap();
        assert!(
            store
                .due_mesh_answers("2026-12-07T10:01:00.000Z", 10)
                .await
                .unwrap()
                .is_empty(),
            "not before its next attempt"
        );
        let again = store
            .due_mesh_answers("2026-12-07T10:05:00.000Z", 10)
            .await
            .unwrap();
        assert_eq!(again[0].attempts, 1);
        store
            .finish_mesh_answer("ans-1", true, None, None, "2026-12-07T10:05:01.000Z")
            .await
            .unwrap();
        assert!(
            store
                .due_mesh_answers("2026-12-08T00:00:00.000Z", 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_unacknowledged_message_near_release_alerts_once_not_each_time_its_state_flips() {
        let (_dir, store) = store_with_delivery().await;
        store.start_mesh_message(message("m-1")).await.unwrap();
        store
            .mesh_message_sent(
                "del-1",
                "mesh-1",
                "2026-12-18T10:00:00.000Z",
                "2026-12-18T11:00:00.000Z",
                "2026-12-22T10:00:00.000Z",
            )
            .await
            .unwrap();
        // Two days before a release on the 20th, an hour after the send: both states apply.
        let now = "2026-12-18T11:30:00.000Z";
        let found = store.escalations(now, 3).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.as_deref(), Some("unacknowledged"));
        store
            .change_alerts(
                vec![AlertChange {
                    delivery_id: "del-1".into(),
                    from: None,
                    to: Some("unacknowledged".into()),
                    communication: None,
                    webhook: None,
                    audit: Vec::new(),
                }],
                now,
            )
            .await
            .unwrap();
        // The 20013 arrives: still undelivered near release, which is no new alert.
        store
            .handle_mesh_inbox(
                MeshInboxEntry {
                    mesh_message_id: "in-1".into(),
                    message_type: "DATA".into(),
                    outcome: "itk infrastructure 20013".into(),
                    delivery_id: Some("del-1".into()),
                    received_at: "2026-12-18T11:40:00.000Z".into(),
                },
                MeshInboxEffect {
                    acknowledgement: Some((
                        "del-1".into(),
                        AckKind::Infrastructure,
                        "20013".into(),
                    )),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(
            store
                .escalations("2026-12-18T12:00:00.000Z", 3)
                .await
                .unwrap()
                .is_empty(),
            "no second alert for the same delivery problem"
        );
    }

    #[tokio::test]
    async fn one_holder_has_a_lease_until_it_expires() {
        let (_dir, store) = store_with_delivery().await;
        let t = |m: u32| format!("2026-12-07T10:{m:02}:00.000Z");
        assert!(
            store
                .try_lease("mesh-inbox", "a", &t(0), &t(5))
                .await
                .unwrap()
        );
        assert!(
            !store
                .try_lease("mesh-inbox", "b", &t(1), &t(6))
                .await
                .unwrap()
        );
        assert!(
            store
                .try_lease("mesh-inbox", "a", &t(2), &t(7))
                .await
                .unwrap(),
            "renewed"
        );
        assert!(
            !store
                .try_lease("mesh-inbox", "b", &t(6), &t(11))
                .await
                .unwrap()
        );
        assert!(
            store
                .try_lease("mesh-inbox", "b", &t(8), &t(13))
                .await
                .unwrap(),
            "expired"
        );
    }
}
