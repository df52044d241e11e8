-- The receiving prison of a transfer, as routing established it from the prison register at
-- intake (NULL for every other custody event). With `sender_ods` it answers which prisons have
-- held a patient and which holds them now (Consent authority, `$sharing-decision`). Documents
-- accepted before this migration have none recorded: their senders remain their holders.
ALTER TABLE documents ADD COLUMN receiving_prison_ods TEXT;
-- A patient's documents in the order they were accepted.
CREATE INDEX documents_nhs_number_received ON documents (nhs_number, received_at);
