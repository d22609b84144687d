-- An event whose apply failed for a reason that will not go away by itself
-- (a Stripe object the service cannot read, a request Stripe refuses, a
-- row the database refuses) waits here, retried with backoff, so that it
-- holds back neither the Events API backfill nor any later event. Its row
-- is deleted once the event is applied. Global, as ignored_stripe_events:
-- such a failure may come before the event's user is known.
CREATE TABLE parked_stripe_events (
    event_id        text        PRIMARY KEY,
    event_type      text        NOT NULL,
    object_id       text,
    -- As stored for applied events: every client_secret removed.
    payload         text        NOT NULL,
    attempts        integer     NOT NULL CHECK (attempts >= 1),
    last_error      text        NOT NULL,
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL
);
CREATE INDEX parked_stripe_events_due ON parked_stripe_events (next_attempt_at);

-- Stripe's Events API is read forward from the last event handled
-- (`ending_before`), no longer by time alone: its id (NULL until a pass
-- has found where to begin), and, while a pass walks back to find that,
-- the oldest event it has reached (db/reconciliation.rs).
ALTER TABLE reconciliation_cursor ADD COLUMN events_last_id text,
                                  ADD COLUMN events_seek_id text;
