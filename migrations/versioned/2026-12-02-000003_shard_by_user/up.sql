-- Every user-owned table is keyed by user_id, so each can be distributed by
-- user (Citus, see deploy/citus/) and a money transaction touches one
-- user's rows only. What must hold across users lives in two global tables:
--   intent_owners          an intent belongs to one user, forever;
--   ignored_stripe_events  events that concern no user of ours.
-- Not expand/contract: the previous release reads payments.id. Stop the old
-- replicas, migrate, start the new ones (docs/operating.md, "Upgrading").

-- An intent's owner, fixed when the intent is stored. Written once per
-- intent; every payment row must name its intent's owner (foreign key), so
-- no intent is ever stored, or credited, under two users.
CREATE TABLE intent_owners (
    stripe_intent_id text        PRIMARY KEY CHECK (stripe_intent_id <> ''),
    user_id          text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- The target of payments' foreign key.
    CONSTRAINT intent_owners_intent_user_unique UNIQUE (stripe_intent_id, user_id)
);
INSERT INTO intent_owners (stripe_intent_id, user_id, created_at)
    SELECT stripe_intent_id, user_id, created_at FROM payments;

-- Events that were ignored (not a PaymentIntent event, or an intent that is
-- not ours): no user to file them under. Keyed by event id.
CREATE TABLE ignored_stripe_events (
    event_id     text        PRIMARY KEY CHECK (event_id <> ''),
    event_type   text        NOT NULL,
    object_id    text,
    reason       text        NOT NULL,
    payload      text        NOT NULL,
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO ignored_stripe_events
    (event_id, event_type, object_id, reason, payload, received_at, processed_at)
    SELECT event_id, event_type, object_id, 'recorded before reasons were kept',
           payload, received_at, processed_at
      FROM stripe_events WHERE outcome = 'ignored';

-- The ledger loses its references by surrogate id.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_payment_id_fkey,
    DROP CONSTRAINT ledger_entries_stripe_event_id_fkey,
    DROP CONSTRAINT ledger_top_up_is_a_paid_credit,
    DROP CONSTRAINT ledger_one_entry_per_intent_and_kind,
    DROP CONSTRAINT ledger_entries_pkey;
ALTER TABLE ledger_entries DROP COLUMN payment_id;
DROP INDEX ledger_entries_user_id_idx;
DROP INDEX ledger_entries_stripe_event_id_idx;

-- payments: keyed by (user_id, stripe_intent_id); the intent's global
-- uniqueness is intent_owners' primary key.
ALTER TABLE payments
    DROP CONSTRAINT payments_pkey,
    DROP CONSTRAINT payments_stripe_intent_id_key;
ALTER TABLE payments DROP COLUMN id;
DROP INDEX payments_user_id_idx;
ALTER TABLE payments
    ADD CONSTRAINT payments_pkey PRIMARY KEY (user_id, stripe_intent_id),
    ADD CONSTRAINT payments_intent_owner_fkey FOREIGN KEY (stripe_intent_id, user_id)
        REFERENCES intent_owners (stripe_intent_id, user_id);

-- stripe_events: the events applied to a user's payment, keyed by
-- (user_id, event_id). An event's user is its intent's owner, which never
-- changes, so the key keeps each event id applied once.
DELETE FROM stripe_events WHERE outcome = 'ignored';
ALTER TABLE stripe_events DROP CONSTRAINT stripe_events_pkey;
DROP INDEX stripe_events_object_id_idx;
ALTER TABLE stripe_events DROP COLUMN outcome;
ALTER TABLE stripe_events RENAME COLUMN object_id TO stripe_intent_id;
ALTER TABLE stripe_events
    ALTER COLUMN user_id SET NOT NULL,
    ALTER COLUMN stripe_intent_id SET NOT NULL,
    ADD CONSTRAINT stripe_events_user_id_check CHECK (length(user_id) BETWEEN 1 AND 128),
    ADD CONSTRAINT stripe_events_pkey PRIMARY KEY (user_id, event_id);

ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_pkey PRIMARY KEY (user_id, id),
    -- At most one top-up credit per intent: the intent has one owner
    -- (intent_owners), so one per (owner, intent) is one per intent.
    ADD CONSTRAINT ledger_one_entry_per_intent_and_kind UNIQUE (user_id, stripe_intent_id, kind),
    ADD CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (
        kind <> 'top_up' OR (amount_cents > 0 AND stripe_intent_id IS NOT NULL
                             AND stripe_event_id IS NOT NULL)),
    ADD CONSTRAINT ledger_entries_payment_fkey FOREIGN KEY (user_id, stripe_intent_id)
        REFERENCES payments (user_id, stripe_intent_id);
-- No foreign keys from the event rows to their payment, nor from a credit to
-- its event: both are written by one statement (db/apply.rs), the credit
-- from the event row it inserts, and neither is ever deleted. Each such key
-- and the index it needs cost about 12 % of the webhook transaction
-- (docs/performance.md).
