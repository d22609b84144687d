DROP INDEX payments_open_by_updated_at;
DROP TABLE reconciliation_cursor;
DROP INDEX ledger_one_top_up_per_intent;
DELETE FROM ledger_entries
 WHERE kind IN ('refund', 'refund_reversal', 'dispute', 'dispute_reversal');
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_one_entry_per_stripe_object,
    ADD CONSTRAINT ledger_one_entry_per_intent_and_kind UNIQUE (user_id, stripe_intent_id, kind),
    DROP CONSTRAINT ledger_clawback_names_its_cause,
    DROP CONSTRAINT ledger_entries_kind_check,
    ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('top_up', 'spend', 'spend_reversal', 'adjustment')),
    DROP COLUMN stripe_object_id;
ALTER TABLE payments DROP COLUMN amount_refunded_cents, DROP COLUMN amount_disputed_cents;
-- Credits made with no event cannot satisfy the old check: it comes back
-- NOT VALID, for rows written from now on.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_top_up_is_a_paid_credit,
    ADD CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (
        kind <> 'top_up' OR (amount_cents > 0 AND stripe_intent_id IS NOT NULL
                             AND stripe_event_id IS NOT NULL)) NOT VALID;
-- Balances are left as the remaining ledger sums them; a debt left by a
-- clawback cannot be undone here, so the check comes back NOT VALID.
ALTER TABLE balances ADD CONSTRAINT balances_balance_cents_check CHECK (balance_cents >= 0) NOT VALID;

