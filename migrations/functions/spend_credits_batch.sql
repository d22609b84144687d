-- spend_credits_batch: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- Spends coalesced (payments-core/src/db/spend_batches.rs): the spends that
-- wait at the same moment, of any users, made in one call and one commit:
-- the balances locked, then read, moved and written once for the whole
-- batch, the entries inserted by one statement; only the look-up of each
-- key is one statement per spend.
--
-- Each spend is decided as `spend_credits` decides a lone one, in the order
-- given: a spend sees every spend before it in the batch (two of one user
-- take turns; a key given twice is a replay the second time); it is whole:
-- it writes its entry and moves its balance, or, refused, writes nothing.
-- Entry ids follow that order, so each user's entries stay in balance order.
--
-- Every balance row of the batch is locked first, in user order, each by
-- its own primary key (`user_id = ANY (…)` let the planner scan the table):
-- two batches in flight at once then never wait on each other in a circle,
-- and every other writer holds at most one user's balance.
--
-- On Citus a batch spans shards (a two-phase commit), so there spends are
-- not coalesced (PAYMENTS_COALESCE_SPENDS=false) and this function is unused.
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
    -- Each call's key as found before this batch (NULL: not spent before).
    v_found_ids    bigint[];
    v_found_spent  bigint[];
    v_found_after  bigint[];
    v_user_id     text;
BEGIN
    -- Each user once, in user order, each balance locked and read by its
    -- own key: a LATERAL sub-select with FOR UPDATE is never merged into a
    -- join, so it is one primary key look-up per user, in the users' order
    -- (a user without a balance row reads NULL).
    SELECT array_agg(u.user_id ORDER BY u.n), array_agg(b.balance_cents ORDER BY u.n),
           array_agg(b.currency ORDER BY u.n), array_agg(false)
      INTO v_users, v_balances, v_currencies, v_moved
      FROM unnest((SELECT array_agg(DISTINCT id ORDER BY id) FROM unnest(p_user_ids) AS id))
           WITH ORDINALITY AS u (user_id, n)
      LEFT JOIN LATERAL (SELECT balance_cents, currency FROM balances
                          WHERE balances.user_id = u.user_id FOR UPDATE) AS b ON true;

    -- Every call's key looked up at once, under the locks, each by the whole
    -- unique key: the LATERAL sub-select has a LIMIT, so it is never merged
    -- into a join (whose plan, from statistics taken while the ledger was
    -- small, once scanned every entry of the user per key: 40 ms for a user
    -- with many); it is one look-up of the key's own index per call.
    SELECT array_agg(f.id ORDER BY c.n), array_agg(f.spent ORDER BY c.n),
           array_agg(f.balance_after ORDER BY c.n)
      INTO v_found_ids, v_found_spent, v_found_after
      FROM unnest(p_user_ids, p_keys) WITH ORDINALITY AS c (user_id, key, n)
      LEFT JOIN LATERAL (SELECT id, -amount_cents AS spent, balance_after_cents AS balance_after
                           FROM ledger_entries
                          WHERE ledger_entries.user_id = c.user_id AND kind = 'spend'
                            AND idempotency_key = c.key
                          LIMIT 1) AS f ON true;

    FOR i IN 1 .. coalesce(cardinality(p_user_ids), 0) LOOP
        v_pair := p_user_ids[i] || ' ' || p_keys[i];
        v_at := array_position(v_pairs, v_pair);
        IF v_at IS NULL AND v_found_ids[i] IS NOT NULL THEN
            v_pairs := v_pairs || v_pair;
            v_ids := v_ids || v_found_ids[i];
            v_spent := v_spent || v_found_spent[i];
            v_after := v_after || v_found_after[i];
            v_at := cardinality(v_pairs);
        END IF;
        v_user := array_position(v_users, p_user_ids[i]);
        IF v_at IS NOT NULL THEN
            v_outcomes := v_outcomes || 'replayed'::text;
            v_of_call := v_of_call || v_at;
            v_balance_of := v_balance_of || v_after[v_at];
        ELSIF v_balances[v_user] IS NULL OR v_balances[v_user] < p_amount_cents[i] THEN
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
        FOR u IN 1 .. cardinality(v_users) LOOP
            IF v_moved[u] THEN
                v_user_id := v_users[u];
                UPDATE balances SET balance_cents = v_balances[u], updated_at = p_now
                 WHERE user_id = v_user_id;
            END IF;
        END LOOP;

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
