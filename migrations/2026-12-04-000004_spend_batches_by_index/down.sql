DROP INDEX ledger_one_reversal_per_entry;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_one_reversal_per_entry UNIQUE (user_id, reverses_entry_id);

CREATE OR REPLACE FUNCTION spend_credits_batch(
    p_user_ids     text[],
    p_amount_cents bigint[],
    p_keys         text[],
    p_reasons      text[],
    p_now          timestamptz
)
RETURNS TABLE (
    call              integer,
    outcome           text,
    entry_id          bigint,
    spent_cents       bigint,
    new_balance_cents bigint
)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    -- The batch's balances, locked, in user order; moved as spends are decided.
    v_users      text[];
    v_balances   bigint[];
    v_currencies text[];
    v_moved      boolean[];
    -- The spends this batch has met, by "user key" (a key has no space, so
    -- the pair is unambiguous): made before, or made by this batch (entry id
    -- filled once inserted).
    v_pairs      text[] := '{}';
    v_ids        bigint[] := '{}';
    v_spent      bigint[] := '{}';
    v_after      bigint[] := '{}';
    -- Each call's decision: its outcome, its spend in v_pairs, its balance.
    v_outcomes   text[] := '{}';
    v_of_call    integer[] := '{}';
    v_balance_of bigint[] := '{}';
    -- The spends to insert: their calls, their places in v_pairs.
    v_new_calls  integer[] := '{}';
    v_new_pairs  integer[] := '{}';
    v_new_ids    bigint[];
    v_pair       text;
    v_at         integer;
    v_user       integer;
    v_found_id    bigint;
    v_found_spent bigint;
    v_found_after bigint;
BEGIN
    SELECT array_agg(user_id ORDER BY user_id), array_agg(balance_cents ORDER BY user_id),
           array_agg(currency ORDER BY user_id), array_agg(false)
      INTO v_users, v_balances, v_currencies, v_moved
      FROM (SELECT user_id, balance_cents, currency FROM balances
             WHERE user_id = ANY (p_user_ids) ORDER BY user_id FOR UPDATE) AS locked;

    FOR i IN 1 .. coalesce(cardinality(p_user_ids), 0) LOOP
        v_pair := p_user_ids[i] || ' ' || p_keys[i];
        v_at := array_position(v_pairs, v_pair);
        IF v_at IS NULL THEN
            -- Looked up one by one, each by the whole unique key: as one join
            -- over the batch, a planner with stale statistics scanned every
            -- entry of the user per key (40 ms for a user with many).
            SELECT id, -amount_cents, balance_after_cents
              INTO v_found_id, v_found_spent, v_found_after
              FROM ledger_entries
             WHERE user_id = p_user_ids[i] AND kind = 'spend' AND idempotency_key = p_keys[i];
            IF FOUND THEN
                v_pairs := v_pairs || v_pair;
                v_ids := v_ids || v_found_id;
                v_spent := v_spent || v_found_spent;
                v_after := v_after || v_found_after;
                v_at := cardinality(v_pairs);
            END IF;
        END IF;
        v_user := array_position(v_users, p_user_ids[i]);
        IF v_at IS NOT NULL THEN
            v_outcomes := v_outcomes || 'replayed'::text;
            v_of_call := v_of_call || v_at;
            v_balance_of := v_balance_of || v_after[v_at];
        ELSIF v_user IS NULL OR v_balances[v_user] < p_amount_cents[i] THEN
            v_outcomes := v_outcomes || 'insufficient'::text;
            v_of_call := v_of_call || NULL::integer;
            v_balance_of := v_balance_of || coalesce(v_balances[v_user], 0);
        ELSE
            v_balances[v_user] := v_balances[v_user] - p_amount_cents[i];
            v_moved[v_user] := true;
            v_pairs := v_pairs || v_pair;
            v_ids := v_ids || NULL::bigint;
            v_spent := v_spent || p_amount_cents[i];
            v_after := v_after || v_balances[v_user];
            v_new_calls := v_new_calls || i;
            v_new_pairs := v_new_pairs || cardinality(v_pairs);
            v_outcomes := v_outcomes || 'spent'::text;
            v_of_call := v_of_call || cardinality(v_pairs);
            v_balance_of := v_balance_of || v_balances[v_user];
        END IF;
    END LOOP;

    IF cardinality(v_new_calls) > 0 THEN
        UPDATE balances AS b SET balance_cents = v_balances[array_position(v_users, b.user_id)],
                                 updated_at = p_now
         WHERE b.user_id = ANY (v_users) AND v_moved[array_position(v_users, b.user_id)];

        WITH inserted AS (
            INSERT INTO ledger_entries
                (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key,
                 reason, created_at)
            SELECT p_user_ids[c], -p_amount_cents[c], v_after[v_new_pairs[n]],
                   v_currencies[array_position(v_users, p_user_ids[c])], 'spend', p_keys[c],
                   p_reasons[c], p_now
              FROM unnest(v_new_calls) WITH ORDINALITY AS new (c, n)
             ORDER BY n
            RETURNING id
        )
        SELECT array_agg(id ORDER BY id) INTO v_new_ids FROM inserted;
        -- Ids come from one sequence in insertion order: the n-th smallest is
        -- the n-th entry.
        FOR n IN 1 .. cardinality(v_new_pairs) LOOP
            v_ids[v_new_pairs[n]] := v_new_ids[n];
        END LOOP;
    END IF;

    RETURN QUERY
        SELECT n::integer, o, v_ids[f], v_spent[f], b
          FROM unnest(v_outcomes, v_of_call, v_balance_of) WITH ORDINALITY AS d (o, f, b, n)
         ORDER BY n;
END
$$;
