-- Issue 12 item 3: a copy that fails its profiles only in administrative elements is sent, and
-- the failures travel with the delivery as warnings (JSON array of {expression, diagnostics}),
-- shown as Task.output. A copy that fails in clinical content, or carries a medicine without its
-- safety elements, is held: status 'on-hold', business status 'held' (no schema change), not
-- claimed again until a correcting document cancels it or an operator releases it.
ALTER TABLE deliveries ADD COLUMN warnings TEXT;
