-- Data-sharing agreements: every version kept, none edited in place.
CREATE TABLE agreements (
    id          TEXT NOT NULL,
    version     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TRIGGER agreements_no_update BEFORE UPDATE ON agreements
BEGIN SELECT RAISE(ABORT, 'agreement versions are never edited in place'); END;

-- The patient's consents (FHIR Consent), every version kept; the latest version is in force.
CREATE TABLE consents (
    id          TEXT NOT NULL,
    version     INTEGER NOT NULL,
    nhs_number  TEXT NOT NULL,
    status      TEXT NOT NULL,
    body        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE INDEX consents_nhs_number ON consents (nhs_number);
CREATE TRIGGER consents_no_update BEFORE UPDATE ON consents
BEGIN SELECT RAISE(ABORT, 'consent versions are never edited in place'); END;

-- Signed checkpoints of the audit chain head.
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    head_hash TEXT NOT NULL,
    signed_at TEXT NOT NULL,
    kid       TEXT NOT NULL,
    signature TEXT NOT NULL
);
