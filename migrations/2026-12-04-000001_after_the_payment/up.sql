-- After the payment (DESIGN.md stage two, "Money rules", "Reconciliation"):
-- Stripe's refunds and disputes of our PaymentIntents reach the balance as
-- clawbacks, each once per Stripe refund or dispute id, and are given back
-- once when the refund fails or the dispute is won; a payment can be
-- applied with no event (a sync, a reconciliation pass). A clawback is booked
-- in full even when it takes the balance below zero: debt is possible,
-- overdraft is not (spends and debit adjustments still refuse a short
-- balance, in their functions).

ALTER TABLE balances DROP CONSTRAINT balances_balance_cents_check;

ALTER TABLE payments
    -- What has been clawed back so far, net of reversals.
    ADD COLUMN amount_refunded_cents bigint NOT NULL DEFAULT 0
        CHECK (amount_refunded_cents >= 0),
    ADD COLUMN amount_disputed_cents bigint NOT NULL DEFAULT 0
        CHECK (amount_disputed_cents >= 0);

ALTER TABLE ledger_entries
    -- refund, refund_reversal: the Stripe refund id; dispute,
    -- dispute_reversal: the Stripe dispute id.
    ADD COLUMN stripe_object_id text CHECK (
        stripe_object_id ~ '^[\x21-\x7e]+$' AND octet_length(stripe_object_id) <= 255),
    DROP CONSTRAINT ledger_entries_kind_check,
    ADD CONSTRAINT ledger_entries_kind_check CHECK (kind IN (
        'top_up', 'refund', 'refund_reversal', 'dispute', 'dispute_reversal',
        'spend', 'spend_reversal', 'adjustment')),
    -- A clawback takes credits and a reversal gives them back, each naming
    -- its payment and its Stripe refund or dispute.
    ADD CONSTRAINT ledger_clawback_names_its_cause CHECK (
        kind NOT IN ('refund', 'refund_reversal', 'dispute', 'dispute_reversal')
        OR (stripe_intent_id IS NOT NULL AND stripe_object_id IS NOT NULL
            AND CASE WHEN kind IN ('refund', 'dispute') THEN amount_cents < 0
                     ELSE amount_cents > 0 END)),
    -- One top-up per intent stays (the index below); an intent may now have
    -- several refunds, each once.
    DROP CONSTRAINT ledger_one_entry_per_intent_and_kind,
    ADD CONSTRAINT ledger_one_entry_per_stripe_object UNIQUE (user_id, kind, stripe_object_id);

CREATE UNIQUE INDEX ledger_one_top_up_per_intent
    ON ledger_entries (user_id, stripe_intent_id) WHERE kind = 'top_up';

-- The webhook's write (apply_stripe_event) as before, with two changes:
-- its credit's conflict target is the index above, and a NULL event id (a
-- `SyncPaymentIntent`, a reconciliation pass) writes no event row and rests
-- on the compare-and-set and the one top-up per intent alone. Such a
-- credit names no event.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_top_up_is_a_paid_credit,
    ADD CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (
        kind <> 'top_up' OR (amount_cents > 0 AND stripe_intent_id IS NOT NULL));

CREATE OR REPLACE FUNCTION apply_stripe_event(
    p_user_id                    text,
    p_intent_id                  text,
    p_read_status                text,
    p_read_amount_received_cents bigint,
    p_event_id                   text,
    p_event_type                 text,
    p_payload                    text,
    p_received_at                timestamptz,
    p_processed_at               timestamptz,
    p_status                     text,
    p_amount_received_cents      bigint,
    p_failure_code               text,
    p_failure_message            text,
    p_credit_cents               bigint,
    p_currency                   text,
    OUT recorded                 boolean,
    OUT updated                  boolean,
    OUT new_balance_cents        bigint
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_balance bigint;
BEGIN
    recorded := false;
    updated := false;
    IF p_event_id IS NOT NULL THEN
        INSERT INTO stripe_events
            (user_id, event_id, event_type, stripe_intent_id, payload, received_at, processed_at)
        VALUES (p_user_id, p_event_id, p_event_type, p_intent_id, p_payload, p_received_at,
                p_processed_at)
        ON CONFLICT (user_id, event_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;

    UPDATE payments
       SET status = p_status, amount_received_cents = p_amount_received_cents,
           failure_code = p_failure_code, failure_message = p_failure_message,
           updated_at = p_processed_at
     WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id
       AND status = p_read_status AND amount_received_cents = p_read_amount_received_cents;
    IF NOT FOUND THEN
        IF p_event_id IS NOT NULL THEN
            DELETE FROM stripe_events WHERE user_id = p_user_id AND event_id = p_event_id;
        END IF;
        RETURN;
    END IF;
    recorded := true;
    updated := true;

    IF p_credit_cents > 0 THEN
        PERFORM 1 FROM ledger_entries
         WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id AND kind = 'top_up';
        IF FOUND THEN
            RETURN;
        END IF;
        INSERT INTO balances AS b (user_id, balance_cents, currency, updated_at)
        VALUES (p_user_id, p_credit_cents, p_currency, p_processed_at)
        ON CONFLICT (user_id) DO UPDATE
           SET balance_cents = b.balance_cents + excluded.balance_cents,
               updated_at = excluded.updated_at
        RETURNING b.balance_cents INTO v_balance;
        INSERT INTO ledger_entries
            (user_id, amount_cents, balance_after_cents, currency, kind, stripe_intent_id,
             stripe_event_id, created_at)
        VALUES (p_user_id, p_credit_cents, v_balance, p_currency, 'top_up', p_intent_id,
                p_event_id, p_processed_at)
        ON CONFLICT (user_id, stripe_intent_id) WHERE kind = 'top_up' DO NOTHING;
        IF FOUND THEN
            new_balance_cents := v_balance;
        ELSE
            UPDATE balances SET balance_cents = balance_cents - p_credit_cents
             WHERE user_id = p_user_id;
        END IF;
    END IF;
END
$$;


-- One clawback or its reversal, once per (kind, Stripe object), on one
-- user's rows (distributed by its first argument on Citus). p_cents: the
-- refund's or dispute's amount as Stripe gives it (> 0); a reversal gives
-- back what its clawback took, whatever p_cents says. Outcomes:
--   'made'               the entry is written, the balance and payment moved;
--   'already'            this kind of entry exists for the object: nothing;
--   'not_credited'       the payment's top-up is not booked yet: nothing
--                        (the caller retries once it is);
--   'nothing_to_reverse' a reversal of a clawback never made: nothing.
CREATE FUNCTION apply_clawback(
    p_user_id    text,
    p_intent_id  text,
    p_kind       text,
    p_object_id  text,
    p_cents      bigint,
    p_event_id   text,
    p_now        timestamptz,
    OUT outcome  text,
    OUT entry_id bigint,
    OUT new_balance_cents bigint
)
LANGUAGE plpgsql
AS $$
DECLARE
    v_balance  bigint;
    v_currency text;
    v_signed   bigint;
    v_taken    bigint;
BEGIN
    IF p_kind NOT IN ('refund', 'refund_reversal', 'dispute', 'dispute_reversal') THEN
        RAISE EXCEPTION 'apply_clawback: % is not a clawback kind', p_kind
            USING ERRCODE = 'check_violation';
    END IF;
    IF p_cents IS NULL OR p_cents <= 0 THEN
        RAISE EXCEPTION 'apply_clawback: amount must be positive'
            USING ERRCODE = 'check_violation';
    END IF;
    -- The user's money moves one at a time: spends, adjustments and
    -- clawbacks all lock the balance row first.
    SELECT balance_cents, currency INTO v_balance, v_currency
      FROM balances WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_credited';
        RETURN;
    END IF;
    SELECT id, balance_after_cents INTO entry_id, new_balance_cents
      FROM ledger_entries
     WHERE user_id = p_user_id AND kind = p_kind AND stripe_object_id = p_object_id;
    IF FOUND THEN
        outcome := 'already';
        RETURN;
    END IF;
    PERFORM 1 FROM ledger_entries
     WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id AND kind = 'top_up';
    IF NOT FOUND THEN
        outcome := 'not_credited';
        RETURN;
    END IF;
    IF p_kind IN ('refund', 'dispute') THEN
        v_signed := -p_cents;
    ELSE
        SELECT -amount_cents INTO v_taken
          FROM ledger_entries
         WHERE user_id = p_user_id AND stripe_object_id = p_object_id
           AND kind = CASE p_kind WHEN 'refund_reversal' THEN 'refund' ELSE 'dispute' END;
        IF NOT FOUND THEN
            outcome := 'nothing_to_reverse';
            RETURN;
        END IF;
        v_signed := v_taken;
    END IF;

    UPDATE balances SET balance_cents = balance_cents + v_signed, updated_at = p_now
     WHERE user_id = p_user_id
    RETURNING balance_cents INTO v_balance;
    INSERT INTO ledger_entries
        (user_id, amount_cents, balance_after_cents, currency, kind, stripe_intent_id,
         stripe_event_id, stripe_object_id, created_at)
    VALUES (p_user_id, v_signed, v_balance, v_currency, p_kind, p_intent_id,
            p_event_id, p_object_id, p_now)
    RETURNING id INTO entry_id;
    UPDATE payments
       SET amount_refunded_cents = amount_refunded_cents
               - CASE WHEN p_kind LIKE 'refund%' THEN v_signed ELSE 0 END,
           amount_disputed_cents = amount_disputed_cents
               - CASE WHEN p_kind LIKE 'dispute%' THEN v_signed ELSE 0 END,
           updated_at = p_now
     WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id;
    outcome := 'made';
    new_balance_cents := v_balance;
END
$$;

-- Where reconciliation's read of Stripe's Events API stands: the creation
-- time (Unix seconds) of the newest event it has applied. One row for the
-- deployment, not a user's: it stays on the coordinator on Citus.
CREATE TABLE reconciliation_cursor (
    singleton   boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    events_created_at bigint NOT NULL CHECK (events_created_at >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Reconciliation's two reads of payments still open, oldest first: those
-- not updated for a while (re-fetched), and those waiting for the customer
-- for too long (cancelled at Stripe).
CREATE INDEX payments_open_by_updated_at ON payments (updated_at)
    WHERE status NOT IN ('succeeded', 'canceled');
