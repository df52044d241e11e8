-- The loss report of a delivery's copy (JSON array of {path, code, reason}), shown on its Task.
ALTER TABLE deliveries ADD COLUMN loss_report TEXT;
-- How an endpoint receives: fhir-rest (POST of the copy) today; mesh to come.
ALTER TABLE endpoints ADD COLUMN kind TEXT NOT NULL DEFAULT 'fhir-rest';
-- A stable code (GW-*) for why a delivery is where it is; listed in openapi.yaml.
ALTER TABLE deliveries ADD COLUMN reason_code TEXT;
