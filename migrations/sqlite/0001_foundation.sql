-- Documents accepted from prison EHRs, kept byte for byte as received.
CREATE TABLE documents (
    id                TEXT PRIMARY KEY,
    sender_client     TEXT NOT NULL,
    sender_ods        TEXT NOT NULL,
    identifier_system TEXT NOT NULL,
    identifier_value  TEXT NOT NULL,
    content_hash      TEXT NOT NULL,
    nhs_number        TEXT NOT NULL,
    event_code        TEXT NOT NULL,
    event_date        TEXT,
    received_at       TEXT NOT NULL,
    body              BLOB NOT NULL,
    UNIQUE (sender_ods, identifier_system, identifier_value)
);
CREATE INDEX documents_nhs_number ON documents (nhs_number);

-- The tamper-evident audit log: each entry carries the SHA-256 of the previous one.
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY,
    recorded_at  TEXT NOT NULL,
    actor_client TEXT,
    actor_ods    TEXT,
    action       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    nhs_number   TEXT,
    entities     TEXT NOT NULL,
    detail       TEXT NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL
);
CREATE INDEX audit_log_nhs_number ON audit_log (nhs_number);

-- Append-only: no statement through the gateway's connection may change or remove an entry.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;

-- Client assertion ids already used, kept until the assertion would have expired.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_at);
