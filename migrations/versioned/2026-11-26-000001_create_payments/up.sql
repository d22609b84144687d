-- Payments, balances, the ledger and the Stripe event registry.
-- Every row that belongs to a user carries user_id, so the data can be
-- distributed by user later; every money column is bigint minor units with a
-- currency beside it.

CREATE TABLE payments (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stripe_intent_id      text        NOT NULL UNIQUE CHECK (stripe_intent_id <> ''),
    user_id               text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    amount_cents          bigint      NOT NULL CHECK (amount_cents > 0),
    amount_received_cents bigint      NOT NULL DEFAULT 0 CHECK (amount_received_cents >= 0),
    currency              text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    status                text        NOT NULL CHECK (status IN (
                              'requires_payment_method', 'requires_confirmation',
                              'requires_action', 'processing', 'requires_capture',
                              'canceled', 'succeeded')),
    failure_code          text,
    failure_message       text,
    idempotency_key       text        CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_user_idempotency_key_unique UNIQUE (user_id, idempotency_key)
);

CREATE TABLE balances (
    user_id       text        PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 128),
    balance_cents bigint      NOT NULL DEFAULT 0 CHECK (balance_cents >= 0),
    currency      text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stripe_events (
    event_id     text        PRIMARY KEY CHECK (event_id <> ''),
    event_type   text        NOT NULL,
    object_id    text,
    -- Known once the event's PaymentIntent has been confirmed with Stripe.
    user_id      text,
    outcome      text        NOT NULL CHECK (outcome IN ('applied', 'ignored')),
    payload      text        NOT NULL,
    received_at  timestamptz NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stripe_events_object_id_idx ON stripe_events (object_id);

CREATE TABLE ledger_entries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          text        NOT NULL CHECK (length(user_id) BETWEEN 1 AND 128),
    -- Signed: credits are positive, spends (later) negative.
    amount_cents     bigint      NOT NULL CHECK (amount_cents <> 0),
    currency         text        NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    kind             text        NOT NULL CHECK (kind IN ('top_up')),
    payment_id       bigint      REFERENCES payments (id),
    stripe_intent_id text,
    stripe_event_id  text        REFERENCES stripe_events (event_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (
        kind <> 'top_up'
        OR (amount_cents > 0 AND payment_id IS NOT NULL AND stripe_intent_id IS NOT NULL)),
    -- At most one top-up credit per PaymentIntent, whatever the code does.
    CONSTRAINT ledger_one_entry_per_intent_and_kind UNIQUE (stripe_intent_id, kind)
);

CREATE INDEX ledger_entries_user_id_idx ON ledger_entries (user_id);
CREATE INDEX ledger_entries_payment_id_idx ON ledger_entries (payment_id);
CREATE INDEX ledger_entries_stripe_event_id_idx ON ledger_entries (stripe_event_id);
CREATE INDEX payments_user_id_idx ON payments (user_id);
