-- One row per (document, recipient): the durable outbox, shown as a FHIR Task.
CREATE TABLE deliveries (
    id                    TEXT PRIMARY KEY,
    document_id           TEXT NOT NULL REFERENCES documents (id),
    nhs_number            TEXT NOT NULL,
    sender_ods            TEXT NOT NULL,
    recipient_ods         TEXT NOT NULL,
    recipient_role        TEXT NOT NULL,
    relationships         TEXT NOT NULL,
    needs_gp_registration INTEGER NOT NULL DEFAULT 0,
    -- requested | in-progress | completed | failed | rejected
    status                TEXT NOT NULL,
    -- awaiting-pull | scheduled | retrying | delivered | dead-letter | no-agreement | permanent-error
    business_status       TEXT NOT NULL,
    reason                TEXT,
    attempts              INTEGER NOT NULL DEFAULT 0,
    next_attempt_at       TEXT,
    claimed_until         TEXT,
    release_date          TEXT,
    at_risk               INTEGER NOT NULL DEFAULT 0,
    last_status_code      INTEGER,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL,
    UNIQUE (document_id, recipient_ods)
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
CREATE INDEX deliveries_recipient ON deliveries (recipient_ods, updated_at);

-- Recipients' push endpoints.
CREATE TABLE endpoints (
    ods        TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    profile    TEXT NOT NULL,
    auth       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
