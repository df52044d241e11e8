-- Delivering to GP practices as ITK3 Transfer of Care messages over MESH (issue 13).

-- A MESH endpoint: the recipient's mailbox (NULL: found by MESH endpoint lookup by ODS code and
-- workflow, cached) and the document workflow (TOC_FHIR_IP_DISCH). `url` is empty for MESH.
ALTER TABLE endpoints ADD COLUMN mailbox TEXT;
ALTER TABLE endpoints ADD COLUMN workflow TEXT;

-- One ITK3 message per delivery. Its ids are made once, at the first send, and reused on every
-- resend (after a crash, a retry, an operator's replay), so the practice system's duplicate
-- detection (20007, 20008) recognises a resend. Responses are matched by the MessageHeader id
-- (MessageHeader.response.identifier) and by the SenderReference the practice echoes.
CREATE TABLE mesh_messages (
    delivery_id          TEXT PRIMARY KEY REFERENCES deliveries (id),
    message_id           TEXT NOT NULL UNIQUE,
    document_identifier  TEXT NOT NULL,
    sender_reference     TEXT NOT NULL UNIQUE,
    to_mailbox           TEXT NOT NULL,
    workflow             TEXT NOT NULL,
    -- The MESH message id of the latest send.
    mesh_message_id      TEXT,
    sent_at              TEXT,
    -- The infrastructure acknowledgement (10xxx / 20xxx) and the business one (3xxxx).
    infrastructure_code  TEXT,
    infrastructure_at    TEXT,
    business_code        TEXT,
    business_at          TEXT,
    -- When each acknowledgement is overdue (escalated past it).
    infrastructure_due   TEXT,
    business_due         TEXT,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX mesh_messages_mesh_id ON mesh_messages (mesh_message_id);

-- Inbox messages already handled (by MESH message id): handling is idempotent, so a message
-- downloaded twice (a crash before its MESH acknowledgement) moves nothing twice.
CREATE TABLE mesh_inbox (
    mesh_message_id  TEXT PRIMARY KEY,
    message_type     TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    delivery_id      TEXT,
    received_at      TEXT NOT NULL
);

-- Work that one instance does at a time (the MESH inbox poller): whoever holds the lease.
CREATE TABLE leases (
    name    TEXT PRIMARY KEY,
    holder  TEXT NOT NULL,
    until   TEXT NOT NULL
);
