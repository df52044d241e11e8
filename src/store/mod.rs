//! Storage: one trait, with SQLite embedded by default (PostgreSQL beside it for deployments
//! with several gateway instances). Handlers never see SQL; stages call these methods.

mod sqlite;

pub use sqlite::SqliteStore;

/// The SQLite database file inside a data directory.
pub fn sqlite_file_name() -> &'static str {
    sqlite::DATABASE_FILE
}

use async_trait::async_trait;

use crate::chain::{AuditDraft, AuditEntry};
use crate::domain::{BusinessStatus, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
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
    /// The receiving prison of a transfer, as routing established it (None otherwise).
    pub receiving_prison_ods: Option<String>,
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
    /// The receiving prison of a transfer, as routing established it at intake.
    pub receiving_prison_ods: Option<String>,
    pub body: Vec<u8>,
}

/// One accepted custody document, as custody is read from it: who sent it, what happened and,
/// for a transfer, the receiving prison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustodyRecord {
    pub sender_ods: String,
    pub event_code: String,
    pub receiving_prison_ods: Option<String>,
    pub received_at: String,
}

/// A delivery (outbox row) written with the document that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub id: String,
    pub recipient_ods: String,
    pub recipient_role: String,
    /// JSON array of relationships.
    pub relationships: String,
    pub needs_gp_registration: bool,
    pub status: TaskStatus,
    pub business_status: BusinessStatus,
    /// The stable code (`GW-DELIVERY-*`) of why it is where it is.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub next_attempt_at: Option<String>,
    pub release_date: Option<String>,
    /// The loss report of the copy previewed at intake (JSON array).
    pub loss_report: Option<String>,
    /// The copy carries a continuity-critical medicine (`mappings/medicines/`).
    pub continuity_critical: bool,
    /// Days before the release date at which a copy still undelivered raises an alert.
    pub lead_time_days: Option<i64>,
    /// The administrative failures of the copy previewed at intake (JSON array of
    /// `{expression, diagnostics}`).
    pub warnings: Option<String>,
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub document_id: String,
    pub nhs_number: String,
    pub sender_ods: String,
    pub recipient_ods: String,
    pub recipient_role: String,
    pub relationships: String,
    pub needs_gp_registration: bool,
    pub status: TaskStatus,
    pub business_status: BusinessStatus,
    /// The stable code (`GW-DELIVERY-*`) of why it is where it is.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub claimed_until: Option<String>,
    pub release_date: Option<String>,
    pub at_risk: bool,
    pub last_status_code: Option<i64>,
    /// The loss report of the copy last made for this delivery (JSON array).
    pub loss_report: Option<String>,
    /// The copy carries a continuity-critical medicine (`mappings/medicines/`).
    pub continuity_critical: bool,
    /// Days before the release date at which a copy still undelivered raises an alert (`None`:
    /// the configured default, `alerts.lead_time_days`).
    pub lead_time_days: Option<i64>,
    /// The escalation state last alerted (`held`, `failed`, `dead-letter`,
    /// `undelivered-near-release`), and when; `None` when no escalation is open.
    pub alert_state: Option<String>,
    pub alerted_at: Option<String>,
    /// The administrative failures against its profiles of the copy last made (JSON array of
    /// `{expression, diagnostics}`): they travel with a copy that goes.
    pub warnings: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The outcome of one attempt, written when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryUpdate {
    pub status: TaskStatus,
    pub business_status: BusinessStatus,
    /// The stable code (`GW-DELIVERY-*`) of why it is where it is.
    pub reason_code: Option<String>,
    pub reason: Option<String>,
    pub next_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    /// The loss report of the copy made for this attempt; `None` keeps the one stored.
    pub loss_report: Option<String>,
    /// The administrative warnings of the copy made for this attempt; `None` keeps those
    /// stored.
    pub warnings: Option<String>,
    pub updated_at: String,
}

/// Filters for listing deliveries (Task search, the operators' view).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub document_id: Option<String>,
    pub recipient_ods: Option<String>,
    /// Deliveries visible to this organisation: as sender or as recipient.
    pub party_ods: Option<String>,
    pub status: Option<TaskStatus>,
    pub business_status: Option<BusinessStatus>,
    pub at_risk: Option<bool>,
    /// Deliveries with an open escalation (`alert_state` set), or without one.
    pub escalated: Option<bool>,
    pub updated_since: Option<String>,
    pub limit: i64,
}

/// A change of a delivery's escalation state, with the alert it raises (none when the
/// escalation ends). Written only if the delivery's state last alerted is still `from`.
#[derive(Debug, Clone)]
pub struct AlertChange {
    pub delivery_id: String,
    /// The state last alerted, as read.
    pub from: Option<String>,
    /// The state now (`None`: the escalation is over, nothing is raised).
    pub to: Option<String>,
    /// The Communication to the sending prison.
    pub communication: Option<NewCommunication>,
    /// The webhook event body (JSON), when a webhook is configured.
    pub webhook: Option<NewWebhookEvent>,
    pub audit: Vec<AuditDraft>,
}

/// A Communication about to be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCommunication {
    pub id: String,
    pub sender_ods: String,
    pub state: String,
    pub sent: String,
    /// The Communication resource (JSON).
    pub body: String,
}

/// A stored Communication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommunicationRecord {
    pub id: String,
    pub delivery_id: String,
    pub sender_ods: String,
    pub state: String,
    pub sent: String,
    pub body: String,
}

/// Filters for listing Communications; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct CommunicationFilter {
    pub sender_ods: Option<String>,
    pub state: Option<String>,
    /// Inclusive lower bound on `sent`.
    pub since: Option<String>,
    /// Exclusive upper bound on `sent`.
    pub until: Option<String>,
    pub limit: i64,
}

/// A webhook event about to be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWebhookEvent {
    pub id: String,
    pub body: String,
}

/// The ITK3 message of a delivery over MESH (issue 13). Its ids are made at the first send and
/// kept for every resend, so the practice system's duplicate detection recognises a resend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshMessageRecord {
    pub delivery_id: String,
    /// The ITK MessageHeader id (answered in `MessageHeader.response.identifier`).
    pub message_id: String,
    /// The ITK document Bundle's identifier value.
    pub document_identifier: String,
    /// The handling specification's SenderReference (echoed in responses).
    pub sender_reference: String,
    pub to_mailbox: String,
    pub workflow: String,
    /// The MESH message id of the latest send.
    pub mesh_message_id: Option<String>,
    pub sent_at: Option<String>,
    pub infrastructure_code: Option<String>,
    pub infrastructure_at: Option<String>,
    pub business_code: Option<String>,
    pub business_at: Option<String>,
    pub infrastructure_due: Option<String>,
    pub business_due: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A message read from the gateway's MESH inbox, as handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshInboxEntry {
    pub mesh_message_id: String,
    /// `DATA` or `REPORT`.
    pub message_type: String,
    /// What handling it did (`infrastructure-ack 20013`, `unreadable`, ...).
    pub outcome: String,
    pub delivery_id: Option<String>,
    pub received_at: String,
}

/// What an inbox message changes, committed with its [`MeshInboxEntry`] in one transaction.
#[derive(Debug, Clone, Default)]
pub struct MeshInboxEffect {
    /// The acknowledgement to record on the delivery's ITK message: (delivery id, kind
    /// `infrastructure` or `business`, response code).
    pub acknowledgement: Option<(String, AckKind, String)>,
    /// The delivery's new state.
    pub delivery: Option<(String, DeliveryUpdate)>,
    /// The gateway's own ITK3 response to send (queued with the rest, sent after).
    pub answer: Option<MeshAnswer>,
    pub audit: Vec<AuditDraft>,
}

/// An ITK3 response of the gateway's own, queued for the inbox poller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshAnswer {
    pub id: String,
    pub to_mailbox: String,
    pub workflow: String,
    pub body: Vec<u8>,
    pub attempts: i64,
}

/// Which ITK acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    Infrastructure,
    Business,
}

/// A queued webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    pub id: String,
    pub delivery_id: String,
    pub body: String,
    /// pending | sent | failed
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The end of one webhook attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUpdate {
    /// pending (to be retried at `next_attempt_at`) | sent | failed
    pub status: String,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: String,
}

/// A recipient's endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRecord {
    pub ods: String,
    /// How the endpoint receives (`fhir-rest`, `mesh`).
    pub kind: String,
    pub url: String,
    pub profile: String,
    /// JSON: how the gateway authenticates to the endpoint.
    pub auth: String,
    /// MESH: the recipient's mailbox (`None`: found by MESH endpoint lookup).
    pub mailbox: Option<String>,
    /// MESH: the document workflow.
    pub workflow: Option<String>,
    pub updated_at: String,
    pub updated_by: String,
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

/// One version of a data-sharing agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRecord {
    pub id: String,
    pub version: i64,
    pub status: String,
    /// The agreement as JSON.
    pub body: String,
    pub recorded_at: String,
    pub recorded_by: String,
}

/// One version of a patient's Consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub id: String,
    pub version: i64,
    pub nhs_number: String,
    pub status: String,
    /// The Consent resource as stored (with `meta.versionId`).
    pub body: String,
    pub recorded_at: String,
    pub recorded_by: String,
}

/// Filters for an audit search; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub nhs_number: Option<String>,
    /// Inclusive lower bound on `recorded_at` (RFC 3339 UTC).
    pub since: Option<String>,
    /// Exclusive upper bound on `recorded_at`.
    pub until: Option<String>,
    /// Client id or ODS code of the actor.
    pub agent: Option<String>,
    /// An entity reference such as `Bundle/<id>` (prefix match on the version).
    pub entity: Option<String>,
    pub actions: Option<Vec<String>>,
    pub outcome: Option<String>,
    pub limit: i64,
}

/// The identifying fields of a Consent version being written.
#[derive(Debug, Clone, Copy)]
pub struct ConsentWrite<'a> {
    pub id: &'a str,
    pub nhs_number: &'a str,
    pub status: &'a str,
    pub recorded_at: &'a str,
    pub recorded_by: &'a str,
}

/// A signed checkpoint of the audit chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub head_hash: String,
    pub signed_at: String,
    pub kid: String,
    pub signature: String,
}

/// What happened to an agreement version offered for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionOutcome {
    Stored,
    /// The same version with the same content is already stored.
    Unchanged,
    /// The same version is stored with different content: versions are never edited in place.
    Conflict,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Stores `doc` and `audit` in one transaction, unless the sender already used the
    /// document's identifier; the commit is durable before this returns.
    async fn accept_document(
        &self,
        doc: NewDocument,
        deliveries: Vec<NewDelivery>,
        audit: Vec<AuditDraft>,
    ) -> Result<Acceptance, StoreError>;

    /// Claims up to `limit` deliveries due at `now` (requested or in-progress, not leased),
    /// leasing them until `lease_until` and counting an attempt.
    async fn claim_due(
        &self,
        now: &str,
        lease_until: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Records the end of an attempt with its audit entries. A delivery already `completed`
    /// (its acknowledgement arrived while the attempt was in flight) keeps its state.
    async fn finish_delivery(
        &self,
        id: &str,
        update: DeliveryUpdate,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError>;

    async fn delivery(&self, id: &str) -> Result<Option<DeliveryRecord>, StoreError>;

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Puts a failed, dead-lettered or held delivery back in the queue (an operator's replay
    /// or release): its copy is made again when it is next attempted.
    async fn requeue_delivery(
        &self,
        id: &str,
        now: &str,
        audit: Vec<AuditDraft>,
    ) -> Result<bool, StoreError>;

    /// Marks as at risk the open deliveries whose release date is before `cutoff`; returns
    /// the newly marked ones.
    async fn mark_at_risk(
        &self,
        cutoff: &str,
        now: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// The deliveries whose escalation state now differs from the state last alerted, with the
    /// state now: `held` (Task on-hold), `failed`, `dead-letter`, or `undelivered-near-release`
    /// (requested or in progress when the release date is within the delivery's lead time,
    /// `default_lead_days` when it has none), or `None` (the escalation is over).
    async fn escalations(
        &self,
        now: &str,
        default_lead_days: i64,
    ) -> Result<Vec<(DeliveryRecord, Option<String>)>, StoreError>;

    /// Writes escalation changes in one transaction: each only when the delivery's state last
    /// alerted is still its `from` (another instance may have raised it first), marking the
    /// delivery at risk and storing its Communication, webhook event and audit entries. Returns
    /// the changes written.
    async fn change_alerts(
        &self,
        changes: Vec<AlertChange>,
        now: &str,
    ) -> Result<Vec<AlertChange>, StoreError>;

    /// Communications matching `filter`, newest first.
    async fn communications(
        &self,
        filter: &CommunicationFilter,
    ) -> Result<Vec<CommunicationRecord>, StoreError>;

    /// The number of deliveries in each open escalation state.
    async fn escalation_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// Claims up to `limit` webhook events due at `now`, leasing them until `lease_until` and
    /// counting an attempt.
    async fn claim_webhooks(
        &self,
        now: &str,
        lease_until: &str,
        limit: i64,
    ) -> Result<Vec<WebhookRecord>, StoreError>;

    /// Records the end of a webhook attempt.
    async fn finish_webhook(&self, id: &str, update: WebhookUpdate) -> Result<(), StoreError>;

    /// Counts of deliveries by (status, business status), and the number at risk.
    async fn delivery_counts(&self) -> Result<(Vec<(String, String, i64)>, i64), StoreError>;

    /// Drops every lease (at start-up: a lease held by a process that died is void).
    async fn release_claims(&self) -> Result<u64, StoreError>;

    /// Extends the leases of deliveries still being attempted (`ids`) to `until`, so that a
    /// short lease covers a long push while the worker is alive and expires soon after it dies.
    async fn renew_claims(&self, ids: &[String], until: &str) -> Result<u64, StoreError>;

    async fn put_endpoint(
        &self,
        endpoint: EndpointRecord,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StoreError>;

    async fn endpoint(&self, ods: &str) -> Result<Option<EndpointRecord>, StoreError>;

    async fn endpoints(&self) -> Result<Vec<EndpointRecord>, StoreError>;

    async fn document(&self, id: &str) -> Result<Option<StoredDocument>, StoreError>;

    /// The document `sender_ods` sent under `Bundle.identifier` `system|value`.
    async fn document_by_identifier(
        &self,
        sender_ods: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<StoredDocument>, StoreError>;

    /// Cancels the deliveries of `document_id` that have not gone out (waiting, or failed or
    /// held), because a correction replaces the document; returns them as they were.
    async fn cancel_deliveries(
        &self,
        document_id: &str,
        reason: &str,
        reason_code: &str,
        now: &str,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// A patient's documents, newest first.
    async fn documents_for(&self, nhs_number: &str) -> Result<Vec<StoredDocument>, StoreError>;

    /// Which prisons have sent or received a patient's documents: one record per accepted
    /// document (sender, event, a transfer's receiving prison), newest first. The latest says
    /// which prison holds the patient now.
    async fn custody_records(&self, nhs_number: &str) -> Result<Vec<CustodyRecord>, StoreError>;

    /// Appends entries to the audit chain in one transaction.
    async fn append_audit(&self, drafts: Vec<AuditDraft>) -> Result<(), StoreError>;

    /// Audit entries with `seq > after`, in order, at most `limit`.
    async fn audit_page(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;

    /// Audit entries matching `filter`, newest first.
    async fn audit_search(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;

    /// Records a client assertion id; false when it was already used (a replay).
    async fn remember_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Stores an agreement version with its audit entries, unless that version exists.
    async fn put_agreement(
        &self,
        record: AgreementRecord,
        audit: Vec<AuditDraft>,
    ) -> Result<VersionOutcome, StoreError>;

    /// Every version of every agreement (or of one), ordered by id then version.
    async fn agreement_versions(
        &self,
        id: Option<&str>,
    ) -> Result<Vec<AgreementRecord>, StoreError>;

    /// Stores a new version of a Consent (version = previous + 1, or 1), with its audit entries,
    /// and returns the version. The body and the audit entries are made for the version assigned
    /// inside the transaction, through `render(version)` and `audit(version)`.
    async fn put_consent(
        &self,
        consent: ConsentWrite<'_>,
        render: &(dyn Fn(i64) -> String + Send + Sync),
        audit: &(dyn Fn(i64) -> Vec<AuditDraft> + Send + Sync),
    ) -> Result<i64, StoreError>;

    /// The latest version of one Consent.
    async fn consent(&self, id: &str) -> Result<Option<ConsentRecord>, StoreError>;

    /// The latest version of each Consent for a patient.
    async fn consents_for(&self, nhs_number: &str) -> Result<Vec<ConsentRecord>, StoreError>;

    /// The newest audit entry's sequence number and hash.
    async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;

    async fn add_checkpoint(&self, checkpoint: Checkpoint) -> Result<(), StoreError>;

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError>;

    /// The ITK3 message of a delivery over MESH, if one was started.
    async fn mesh_message(
        &self,
        delivery_id: &str,
    ) -> Result<Option<MeshMessageRecord>, StoreError>;

    /// Starts the ITK3 message of a delivery: stores `record` unless the delivery already has
    /// one for the same mailbox and workflow, and returns the stored one (so a resend reuses
    /// its ids; a delivery whose mailbox changed goes as a new message).
    async fn start_mesh_message(
        &self,
        record: MeshMessageRecord,
    ) -> Result<MeshMessageRecord, StoreError>;

    /// Records a send of the delivery's ITK3 message: its MESH message id, when, and when each
    /// acknowledgement falls due.
    async fn mesh_message_sent(
        &self,
        delivery_id: &str,
        mesh_message_id: &str,
        sent_at: &str,
        infrastructure_due: &str,
        business_due: &str,
    ) -> Result<(), StoreError>;

    /// The ITK3 message a response answers: by its MessageHeader id, else by SenderReference.
    async fn mesh_message_answered(
        &self,
        message_id: Option<&str>,
        sender_reference: Option<&str>,
    ) -> Result<Option<MeshMessageRecord>, StoreError>;

    /// ITK3 messages whose infrastructure acknowledgement is due by `now` and has not come, or
    /// whose business acknowledgement is due by `now` and has not come.
    async fn mesh_overdue(&self, now: &str) -> Result<Vec<MeshMessageRecord>, StoreError>;

    /// Whether the inbox message `mesh_message_id` was already handled.
    async fn mesh_inbox_handled(&self, mesh_message_id: &str) -> Result<bool, StoreError>;

    /// Records an inbox message as handled with its effects, in one transaction. False (and
    /// nothing changed) when it was already handled.
    async fn handle_mesh_inbox(
        &self,
        entry: MeshInboxEntry,
        effect: MeshInboxEffect,
    ) -> Result<bool, StoreError>;

    /// Queued ITK3 responses due to be sent by `now` (at most `limit`).
    async fn due_mesh_answers(&self, now: &str, limit: i64) -> Result<Vec<MeshAnswer>, StoreError>;

    /// Records an attempt to send a queued response: `sent`, or not yet (`next_attempt_at`,
    /// the error) or never (`next_attempt_at` `None`: failed).
    async fn finish_mesh_answer(
        &self,
        id: &str,
        sent: bool,
        next_attempt_at: Option<&str>,
        error: Option<&str>,
        now: &str,
    ) -> Result<(), StoreError>;

    /// Takes or renews the lease `name` for `holder` until `until`, if it is free (expired
    /// before `now`) or already `holder`'s. True when `holder` holds it.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: &str,
        until: &str,
    ) -> Result<bool, StoreError>;

    /// Checks the store answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Flushes and closes connections.
    async fn close(&self);
}
