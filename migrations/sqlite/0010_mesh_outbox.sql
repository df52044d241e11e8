-- The gateway's own ITK3 responses (20013 to a business response, 10009 to an unreadable
-- message), written with the inbox message they answer in one transaction and sent by the
-- inbox poller with retries: a crash between handling a message and answering it loses no
-- answer.
CREATE TABLE mesh_outbox (
    id               TEXT PRIMARY KEY,
    to_mailbox       TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    body             BLOB NOT NULL,
    -- pending | sent | failed
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX mesh_outbox_due ON mesh_outbox (status, next_attempt_at);
