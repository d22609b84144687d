ALTER TABLE reconciliation_cursor DROP COLUMN events_seek_id, DROP COLUMN events_last_id;
DROP TABLE parked_stripe_events;
