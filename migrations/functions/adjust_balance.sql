-- adjust_balance: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- An operator's adjustment (AdminService.AdjustBalance): one call, one
-- transaction, one user's rows. Signed: a credit may go to a user who never
-- paid (the balance row is made at 0 first); a debit never takes the balance
-- below zero and is refused whole. Once per (user, key): a replay finds the
-- first adjustment of its key under the balance lock.
-- outcome: 'adjusted', 'replayed' (the first adjustment of this key: its
-- signed amount, entry and balance after; nothing written), 'insufficient'
-- (a debit the balance does not cover; nothing written).
CREATE OR REPLACE FUNCTION adjust_balance(
    p_user_id             text,
    p_amount_cents        bigint,
    p_key                 text,
    p_reason              text,
    p_actor               text,
    p_currency            text,
    p_now                 timestamptz,
    OUT outcome           text,
    OUT entry_id          bigint,
    OUT adjusted_cents    bigint,
    OUT new_balance_cents bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_balance  bigint;
    v_currency text;
BEGIN
    IF p_amount_cents > 0 THEN
        INSERT INTO balances (user_id, balance_cents, currency, updated_at)
        VALUES (p_user_id, 0, p_currency, p_now)
        ON CONFLICT (user_id) DO NOTHING;
    END IF;
    SELECT balance_cents, currency INTO v_balance, v_currency
      FROM balances WHERE user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        -- A debit of a user with no balance row: nothing to take, no entry
        -- of theirs to replay.
        outcome := 'insufficient';
        new_balance_cents := 0;
        RETURN;
    END IF;

    SELECT id, amount_cents, balance_after_cents INTO entry_id, adjusted_cents, new_balance_cents
      FROM ledger_entries
     WHERE user_id = p_user_id AND kind = 'adjustment' AND idempotency_key = p_key;
    IF FOUND THEN
        outcome := 'replayed';
        RETURN;
    END IF;

    IF p_amount_cents < 0 AND v_balance + p_amount_cents < 0 THEN
        outcome := 'insufficient';
        new_balance_cents := v_balance;
        RETURN;
    END IF;

    UPDATE balances SET balance_cents = v_balance + p_amount_cents, updated_at = p_now
     WHERE user_id = p_user_id;
    INSERT INTO ledger_entries
        (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key, reason, actor,
         created_at)
    VALUES (p_user_id, p_amount_cents, v_balance + p_amount_cents, v_currency, 'adjustment', p_key,
            p_reason, p_actor, p_now)
    RETURNING id INTO entry_id;
    outcome := 'adjusted';
    adjusted_cents := p_amount_cents;
    new_balance_cents := v_balance + p_amount_cents;
END
$$;
