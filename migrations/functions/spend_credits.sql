-- spend_credits: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- A spend: one call, one transaction, one user's rows. The balance row is
-- locked first, so concurrent spends of one user take turns and none can
-- overdraw; under that lock a replay finds the first spend of its key.
-- outcome: 'spent', 'replayed' (the first spend of this key: its amount,
-- entry and balance after; nothing written), 'insufficient' (nothing
-- written; the balance as it is).
CREATE OR REPLACE FUNCTION spend_credits(
    p_user_id            text,
    p_amount_cents       bigint,
    p_key                text,
    p_reason             text,
    p_now                timestamptz,
    OUT outcome          text,
    OUT entry_id         bigint,
    OUT spent_cents      bigint,
    OUT new_balance_cents bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_balance  bigint;
    v_currency text;
BEGIN
    SELECT balance_cents, currency INTO v_balance, v_currency
      FROM balances WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        -- No balance row: this user has no entry, so no spend to replay.
        outcome := 'insufficient';
        new_balance_cents := 0;
        RETURN;
    END IF;

    SELECT id, -amount_cents, balance_after_cents INTO entry_id, spent_cents, new_balance_cents
      FROM ledger_entries
     WHERE user_id = p_user_id AND kind = 'spend' AND idempotency_key = p_key;
    IF FOUND THEN
        outcome := 'replayed';
        RETURN;
    END IF;

    IF v_balance < p_amount_cents THEN
        outcome := 'insufficient';
        new_balance_cents := v_balance;
        RETURN;
    END IF;

    UPDATE balances SET balance_cents = v_balance - p_amount_cents, updated_at = p_now
     WHERE user_id = p_user_id;
    INSERT INTO ledger_entries
        (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key, reason, created_at)
    VALUES (p_user_id, -p_amount_cents, v_balance - p_amount_cents, v_currency, 'spend', p_key,
            p_reason, p_now)
    RETURNING id INTO entry_id;
    outcome := 'spent';
    spent_cents := p_amount_cents;
    new_balance_cents := v_balance - p_amount_cents;
END
$$;
