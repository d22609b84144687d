-- reverse_spend: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- A spend given back whole, once. outcome: 'reversed', 'already_reversed'
-- (nothing written), 'not_found' (no spend of this user has this key;
-- nothing written); new_balance_cents is the balance after the call.
CREATE OR REPLACE FUNCTION reverse_spend(
    p_user_id             text,
    p_key                 text,
    p_reason              text,
    p_now                 timestamptz,
    OUT outcome           text,
    OUT entry_id          bigint,
    OUT new_balance_cents bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_balance  bigint;
    v_currency text;
    v_spend    bigint;
    v_amount   bigint;
BEGIN
    SELECT balance_cents, currency INTO v_balance, v_currency
      FROM balances WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;

    SELECT id, -amount_cents INTO v_spend, v_amount
      FROM ledger_entries
     WHERE user_id = p_user_id AND kind = 'spend' AND idempotency_key = p_key;
    IF NOT FOUND THEN
        outcome := 'not_found';
        RETURN;
    END IF;

    SELECT id INTO entry_id
      FROM ledger_entries WHERE user_id = p_user_id AND reverses_entry_id = v_spend;
    IF FOUND THEN
        outcome := 'already_reversed';
        new_balance_cents := v_balance;
        RETURN;
    END IF;

    UPDATE balances SET balance_cents = v_balance + v_amount, updated_at = p_now
     WHERE user_id = p_user_id;
    INSERT INTO ledger_entries
        (user_id, amount_cents, balance_after_cents, currency, kind, reverses_entry_id, reason, created_at)
    VALUES (p_user_id, v_amount, v_balance + v_amount, v_currency, 'spend_reversal', v_spend,
            p_reason, p_now)
    RETURNING id INTO entry_id;
    outcome := 'reversed';
    new_balance_cents := v_balance + v_amount;
END
$$;
