-- The escalation round reads only the deliveries that can be or have been escalated (open ones,
-- ones with an open alert, and completed ones the practice reported recently deceased), not
-- every delivery ever made: an index for the open alerts.
CREATE INDEX deliveries_alert_state ON deliveries (alert_state);
CREATE INDEX mesh_messages_business_code ON mesh_messages (business_code);
