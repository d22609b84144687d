-- apply_clawback: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- One clawback or its reversal, once per (kind, Stripe object), on one
-- user's rows (distributed by its first argument on Citus). p_cents: the
-- refund's or dispute's amount as Stripe gives it (> 0); a reversal gives
-- back what its clawback took, whatever p_cents says. Outcomes:
--   'made'               the entry is written, the balance and payment moved;
--   'already'            this kind of entry exists for the object: nothing;
--   'not_credited'       the payment's top-up is not booked yet: nothing
--                        (the caller retries once it is);
--   'nothing_to_reverse' a reversal of a clawback never made: nothing.
CREATE OR REPLACE FUNCTION apply_clawback(
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
