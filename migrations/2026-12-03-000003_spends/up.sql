-- Credits that can be spent (DESIGN.md, "Money rules" and "gRPC additions"):
-- spends, their reversals and operators' adjustments join top-ups in the
-- ledger, and every entry carries the balance right after it.

ALTER TABLE ledger_entries
    ADD COLUMN balance_after_cents bigint,
    -- spend, adjustment: the caller's key (unique per user and kind).
    ADD COLUMN idempotency_key text
        CHECK (idempotency_key ~ '^[\x21-\x7e]{1,255}$'),
    -- spend, spend_reversal, adjustment: why, in the caller's words.
    ADD COLUMN reason text CHECK (length(reason) <= 200),
    -- adjustment: who made it.
    ADD COLUMN actor text CHECK (length(actor) BETWEEN 1 AND 128),
    -- spend_reversal: the spend it gives back.
    ADD COLUMN reverses_entry_id bigint;

-- The entries so far are top-ups only: each one's balance after is the
-- running sum of its user's entries, in the order they were written.
UPDATE ledger_entries AS l
   SET balance_after_cents = running.total
  FROM (SELECT user_id, id,
               sum(amount_cents) OVER (PARTITION BY user_id ORDER BY id) AS total
          FROM ledger_entries) AS running
 WHERE running.user_id = l.user_id AND running.id = l.id;
ALTER TABLE ledger_entries ALTER COLUMN balance_after_cents SET NOT NULL;

ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_kind_check,
    ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('top_up', 'spend', 'spend_reversal', 'adjustment')),
    -- A spend takes credits, has its key; a reversal gives one spend back;
    -- an adjustment is signed and says why and who.
    ADD CONSTRAINT ledger_spend_has_its_key CHECK (
        kind <> 'spend' OR (amount_cents < 0 AND idempotency_key IS NOT NULL)),
    ADD CONSTRAINT ledger_spend_reversal_names_its_spend CHECK (
        kind <> 'spend_reversal' OR (amount_cents > 0 AND reverses_entry_id IS NOT NULL)),
    ADD CONSTRAINT ledger_adjustment_is_explained CHECK (
        kind <> 'adjustment' OR (idempotency_key IS NOT NULL AND reason IS NOT NULL
                                 AND actor IS NOT NULL)),
    -- One spend (one adjustment) per user and key: a replay finds it.
    ADD CONSTRAINT ledger_one_entry_per_key_and_kind UNIQUE (user_id, kind, idempotency_key),
    -- A spend is reversed at most once.
    ADD CONSTRAINT ledger_one_reversal_per_entry UNIQUE (user_id, reverses_entry_id),
    ADD CONSTRAINT ledger_reversal_entry_fkey FOREIGN KEY (user_id, reverses_entry_id)
        REFERENCES ledger_entries (user_id, id);

-- A user's history, newest first, is the primary key (user_id, id) read
-- backwards: no index of its own.

-- The webhook's write, now also writing the top-up's balance after: the
-- balance is moved first (its new value is the entry's balance after), then
-- the credit is written; if the credit already exists (a concurrent
-- delivery of another event of the same intent, which the compare-and-set
-- makes rare), the balance is moved back in the same transaction.
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

-- A spend: one call, one transaction, one user's rows. The balance row is
-- locked first, so concurrent spends of one user take turns and none can
-- overdraw; under that lock a replay finds the first spend of its key.
-- outcome: 'spent', 'replayed' (the first spend of this key: its amount,
-- entry and balance after; nothing written), 'insufficient' (nothing
-- written; the balance as it is).
CREATE FUNCTION spend_credits(
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

-- A spend given back whole, once. outcome: 'reversed', 'already_reversed'
-- (nothing written), 'not_found' (no spend of this user has this key;
-- nothing written); new_balance_cents is the balance after the call.
CREATE FUNCTION reverse_spend(
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
