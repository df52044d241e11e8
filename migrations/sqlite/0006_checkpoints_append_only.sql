-- Signed checkpoints are append-only like the log they sign: no statement through the gateway's
-- connection may change or remove one (`audit verify` also fails when a row and its line in the
-- checkpoint file do not match).
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
