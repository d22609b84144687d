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

-- apply_stripe_event: its body lives in migrations/functions/apply_stripe_event.sql.

-- apply_clawback: its body lives in migrations/functions/apply_clawback.sql.

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
