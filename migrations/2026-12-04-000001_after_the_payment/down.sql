DROP INDEX payments_open_by_updated_at;
DROP TABLE reconciliation_cursor;
DROP FUNCTION apply_clawback(text, text, text, text, bigint, text, timestamptz);
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

-- The webhook's write as migration 2026-12-03-000003_spends made it.
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
    INSERT INTO stripe_events
        (user_id, event_id, event_type, stripe_intent_id, payload, received_at, processed_at)
    VALUES (p_user_id, p_event_id, p_event_type, p_intent_id, p_payload, p_received_at, p_processed_at)
    ON CONFLICT (user_id, event_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;

    UPDATE payments
       SET status = p_status, amount_received_cents = p_amount_received_cents,
           failure_code = p_failure_code, failure_message = p_failure_message,
           updated_at = p_processed_at
     WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id
       AND status = p_read_status AND amount_received_cents = p_read_amount_received_cents;
    IF NOT FOUND THEN
        DELETE FROM stripe_events WHERE user_id = p_user_id AND event_id = p_event_id;
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
        ON CONFLICT (user_id, stripe_intent_id, kind) DO NOTHING;
        IF FOUND THEN
            new_balance_cents := v_balance;
        ELSE
            UPDATE balances SET balance_cents = balance_cents - p_credit_cents
             WHERE user_id = p_user_id;
        END IF;
    END IF;
END
$$;
