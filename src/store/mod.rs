//! Storage: one trait, with SQLite embedded by default (PostgreSQL beside it for deployments
//! with several gateway instances). Handlers never see SQL; stages call these methods.

mod sqlite;

pub use sqlite::SqliteStore;

/// The SQLite database file inside a data directory.
pub fn sqlite_file_name() -> &'static str {
    sqlite::DATABASE_FILE
}

use async_trait::async_trait;

use crate::audit::{AuditDraft, AuditEntry};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for crate::error::ApiError {
    fn from(err: StoreError) -> Self {
        crate::error::ApiError::Unexpected(anyhow::Error::new(err))
    }
}

/// A document about to be accepted.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub id: String,
    pub sender_client: String,
    pub sender_ods: String,
    pub identifier_system: String,
    pub identifier_value: String,
    /// SHA-256 of the document's compact JSON: equal content gives an equal hash whatever the
    /// whitespace.
    pub content_hash: String,
    pub nhs_number: String,
    pub event_code: String,
    pub event_date: Option<String>,
    pub received_at: String,
    /// The bytes exactly as received.
    pub body: Vec<u8>,
}

/// A stored document.
#[derive(Debug, Clone)]
pub struct StoredDocument {
    pub id: String,
    pub sender_client: String,
    pub sender_ods: String,
    pub identifier_system: String,
    pub identifier_value: String,
    pub content_hash: String,
    pub nhs_number: String,
    pub event_code: String,
    pub event_date: Option<String>,
    pub received_at: String,
    pub body: Vec<u8>,
}

/// What happened to a document offered for acceptance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// New: stored, with its audit entries, in one commit.
    Created { id: String },
    /// The same sender already sent this identifier with the same content.
    Repeat { id: String },
    /// The same sender already sent this identifier with different content.
    Conflict { id: String },
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `doc` and `audit` in one transaction, unless the sender already used the
    /// document's identifier; the commit is durable before this returns.
    async fn accept_document(
        &self,
        doc: NewDocument,
        audit: Vec<AuditDraft>,
    ) -> Result<Acceptance, StoreError>;

    async fn document(&self, id: &str) -> Result<Option<StoredDocument>, StoreError>;

    /// Appends entries to the audit chain in one transaction.
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError>;

    /// Audit entries with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    /// Records a client assertion id; false when it was already used (a replay).
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and closes connections.
    async fn close(&self);
}
