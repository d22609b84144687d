-- Back to one surrogate key per table and a global event registry.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_payment_fkey,
    DROP CONSTRAINT ledger_top_up_is_a_paid_credit,
    DROP CONSTRAINT ledger_one_entry_per_intent_and_kind,
    DROP CONSTRAINT ledger_entries_pkey;

ALTER TABLE stripe_events
    DROP CONSTRAINT stripe_events_pkey,
    DROP CONSTRAINT stripe_events_user_id_check,
    ALTER COLUMN user_id DROP NOT NULL,
    ALTER COLUMN stripe_intent_id DROP NOT NULL;
ALTER TABLE stripe_events RENAME COLUMN stripe_intent_id TO object_id;
ALTER TABLE stripe_events ADD COLUMN outcome text NOT NULL DEFAULT 'applied'
    CHECK (outcome IN ('applied', 'ignored'));
ALTER TABLE stripe_events ALTER COLUMN outcome DROP DEFAULT;
INSERT INTO stripe_events (event_id, event_type, object_id, outcome, payload, received_at, processed_at)
    SELECT event_id, event_type, object_id, 'ignored', payload, received_at, processed_at
      FROM ignored_stripe_events i
     WHERE NOT EXISTS (SELECT 1 FROM stripe_events e WHERE e.event_id = i.event_id);
ALTER TABLE stripe_events ADD CONSTRAINT stripe_events_pkey PRIMARY KEY (event_id);
CREATE INDEX stripe_events_object_id_idx ON stripe_events (object_id);
DROP TABLE ignored_stripe_events;

ALTER TABLE payments
    DROP CONSTRAINT payments_intent_owner_fkey,
    DROP CONSTRAINT payments_pkey;
ALTER TABLE payments ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE payments
    ADD CONSTRAINT payments_pkey PRIMARY KEY (id),
    ADD CONSTRAINT payments_stripe_intent_id_key UNIQUE (stripe_intent_id);
CREATE INDEX payments_user_id_idx ON payments (user_id);
DROP TABLE intent_owners;

ALTER TABLE ledger_entries ADD COLUMN payment_id bigint REFERENCES payments (id);
UPDATE ledger_entries l SET payment_id = p.id
  FROM payments p WHERE p.stripe_intent_id = l.stripe_intent_id;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_entries_pkey PRIMARY KEY (id),
    ADD CONSTRAINT ledger_one_entry_per_intent_and_kind UNIQUE (stripe_intent_id, kind),
    ADD CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (
        kind <> 'top_up'
        OR (amount_cents > 0 AND payment_id IS NOT NULL AND stripe_intent_id IS NOT NULL)),
    ADD CONSTRAINT ledger_entries_stripe_event_id_fkey FOREIGN KEY (stripe_event_id)
        REFERENCES stripe_events (event_id);
CREATE INDEX ledger_entries_user_id_idx ON ledger_entries (user_id);
CREATE INDEX ledger_entries_payment_id_idx ON ledger_entries (payment_id);
CREATE INDEX ledger_entries_stripe_event_id_idx ON ledger_entries (stripe_event_id);
