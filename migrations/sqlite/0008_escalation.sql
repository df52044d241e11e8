-- Escalation before release (issue 12, item 5).
--
-- Decided at intake from the recipient's copy (else the document): whether it carries a
-- continuity-critical medicine (mappings/medicines/), and the lead time before the release date
-- at which a copy still undelivered raises an alert (NULL: the configured default).
ALTER TABLE deliveries ADD COLUMN continuity_critical INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN lead_time_days INTEGER;
-- The escalation state last alerted (held | failed | dead-letter | undelivered-near-release),
-- NULL when none is open, and when: an alert is raised once per change of state, by whichever
-- instance changes this column first.
ALTER TABLE deliveries ADD COLUMN alert_state TEXT;
ALTER TABLE deliveries ADD COLUMN alerted_at TEXT;

-- Alerts to the sending prison, as FHIR Communication (GET /fhir/Communication).
CREATE TABLE communications (
    id          TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL REFERENCES deliveries (id),
    sender_ods  TEXT NOT NULL,
    state       TEXT NOT NULL,
    sent        TEXT NOT NULL,
    -- The Communication resource (JSON).
    body        TEXT NOT NULL
);
CREATE INDEX communications_sender ON communications (sender_ods, sent);

-- The alert webhook's outbox ([alerts] webhook_url): written with the alert, sent by a worker
-- with retries and backoff like a delivery. The body carries no patient data.
CREATE TABLE alert_webhooks (
    id              TEXT PRIMARY KEY,
    delivery_id     TEXT NOT NULL REFERENCES deliveries (id),
    body            TEXT NOT NULL,
    -- pending | sent | failed
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    claimed_until   TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX alert_webhooks_due ON alert_webhooks (status, next_attempt_at);
