-- The whole schema as the migrations make it: every table, constraint,
-- index and function, in one file a reviewer can read (pg_dump
-- --schema-only of a freshly migrated database, its settings and comments
-- left out). Generated: payments-core/tests/it/schema_files.rs fails when
-- it is stale; `UPDATE_SCHEMA_SNAPSHOT=1 cargo test -p payments-core --test
-- it schema_files` writes it. Never edit it by hand.

CREATE FUNCTION public.adjust_balance(p_user_id text, p_amount_cents bigint, p_key text, p_reason text, p_actor text, p_currency text, p_now timestamp with time zone, OUT outcome text, OUT entry_id bigint, OUT adjusted_cents bigint, OUT new_balance_cents bigint) RETURNS record
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

CREATE FUNCTION public.apply_clawback(p_user_id text, p_intent_id text, p_kind text, p_object_id text, p_cents bigint, p_event_id text, p_now timestamp with time zone, OUT outcome text, OUT entry_id bigint, OUT new_balance_cents bigint) RETURNS record
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

CREATE FUNCTION public.apply_stripe_event(p_user_id text, p_intent_id text, p_read_status text, p_read_amount_received_cents bigint, p_event_id text, p_event_type text, p_payload text, p_received_at timestamp with time zone, p_processed_at timestamp with time zone, p_status text, p_amount_received_cents bigint, p_failure_code text, p_failure_message text, p_credit_cents bigint, p_currency text, OUT recorded boolean, OUT updated boolean, OUT new_balance_cents bigint) RETURNS record
    LANGUAGE plpgsql
    AS $$
DECLARE
    v_balance bigint;
BEGIN
    recorded := false;
    updated := false;
    IF p_event_id IS NOT NULL THEN
        INSERT INTO stripe_events
            (user_id, event_id, event_type, stripe_intent_id, payload, received_at, processed_at)
        VALUES (p_user_id, p_event_id, p_event_type, p_intent_id, p_payload, p_received_at,
                p_processed_at)
        ON CONFLICT (user_id, event_id) DO NOTHING;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;

    UPDATE payments
       SET status = p_status, amount_received_cents = p_amount_received_cents,
           failure_code = p_failure_code, failure_message = p_failure_message,
           updated_at = p_processed_at
     WHERE user_id = p_user_id AND stripe_intent_id = p_intent_id
       AND status = p_read_status AND amount_received_cents = p_read_amount_received_cents;
    IF NOT FOUND THEN
        IF p_event_id IS NOT NULL THEN
            DELETE FROM stripe_events WHERE user_id = p_user_id AND event_id = p_event_id;
        END IF;
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
        ON CONFLICT (user_id, stripe_intent_id) WHERE kind = 'top_up' DO NOTHING;
        IF FOUND THEN
            new_balance_cents := v_balance;
        ELSE
            UPDATE balances SET balance_cents = balance_cents - p_credit_cents
             WHERE user_id = p_user_id;
        END IF;
    END IF;
END
$$;

CREATE FUNCTION public.reverse_spend(p_user_id text, p_key text, p_reason text, p_now timestamp with time zone, OUT outcome text, OUT entry_id bigint, OUT new_balance_cents bigint) RETURNS record
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

CREATE FUNCTION public.spend_credits(p_user_id text, p_amount_cents bigint, p_key text, p_reason text, p_now timestamp with time zone, OUT outcome text, OUT entry_id bigint, OUT spent_cents bigint, OUT new_balance_cents bigint) RETURNS record
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

CREATE FUNCTION public.spend_credits_batch(p_user_ids text[], p_amount_cents bigint[], p_keys text[], p_reasons text[], p_now timestamp with time zone) RETURNS TABLE(call integer, outcome text, entry_id bigint, spent_cents bigint, new_balance_cents bigint)
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

CREATE TABLE public.__diesel_schema_migrations (
    version character varying(50) NOT NULL,
    run_on timestamp without time zone DEFAULT CURRENT_TIMESTAMP NOT NULL
);

CREATE TABLE public.balances (
    user_id text NOT NULL,
    balance_cents bigint DEFAULT 0 NOT NULL,
    currency text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT balances_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT balances_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 128)))
);

CREATE TABLE public.deployment (
    singleton boolean DEFAULT true NOT NULL,
    id text NOT NULL,
    CONSTRAINT deployment_id_check CHECK ((id ~ '^dep_[0-9a-f]{32}$'::text)),
    CONSTRAINT deployment_singleton_check CHECK (singleton)
);

CREATE TABLE public.ignored_stripe_events (
    event_id text NOT NULL,
    event_type text NOT NULL,
    object_id text,
    reason text NOT NULL,
    payload text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    processed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT ignored_stripe_events_event_id_check CHECK ((event_id <> ''::text))
);

CREATE TABLE public.intent_owners (
    stripe_intent_id text NOT NULL,
    user_id text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT intent_owners_stripe_intent_id_check CHECK ((stripe_intent_id <> ''::text)),
    CONSTRAINT intent_owners_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 128)))
);

CREATE TABLE public.ledger_entries (
    id bigint NOT NULL,
    user_id text NOT NULL,
    amount_cents bigint NOT NULL,
    currency text NOT NULL,
    kind text NOT NULL,
    stripe_intent_id text,
    stripe_event_id text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    balance_after_cents bigint NOT NULL,
    idempotency_key text,
    reason text,
    actor text,
    reverses_entry_id bigint,
    stripe_object_id text,
    CONSTRAINT ledger_adjustment_is_explained CHECK (((kind <> 'adjustment'::text) OR ((idempotency_key IS NOT NULL) AND (reason IS NOT NULL) AND (actor IS NOT NULL)))),
    CONSTRAINT ledger_clawback_names_its_cause CHECK (((kind <> ALL (ARRAY['refund'::text, 'refund_reversal'::text, 'dispute'::text, 'dispute_reversal'::text])) OR ((stripe_intent_id IS NOT NULL) AND (stripe_object_id IS NOT NULL) AND
CASE
    WHEN (kind = ANY (ARRAY['refund'::text, 'dispute'::text])) THEN (amount_cents < 0)
    ELSE (amount_cents > 0)
END))),
    CONSTRAINT ledger_entries_actor_check CHECK (((length(actor) >= 1) AND (length(actor) <= 128))),
    CONSTRAINT ledger_entries_amount_cents_check CHECK ((amount_cents <> 0)),
    CONSTRAINT ledger_entries_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT ledger_entries_idempotency_key_check CHECK (((idempotency_key ~ '^[\x21-\x7e]+$'::text) AND (octet_length(idempotency_key) <= 255))),
    CONSTRAINT ledger_entries_kind_check CHECK ((kind = ANY (ARRAY['top_up'::text, 'refund'::text, 'refund_reversal'::text, 'dispute'::text, 'dispute_reversal'::text, 'spend'::text, 'spend_reversal'::text, 'adjustment'::text]))),
    CONSTRAINT ledger_entries_reason_check CHECK ((length(reason) <= 200)),
    CONSTRAINT ledger_entries_stripe_object_id_check CHECK (((stripe_object_id ~ '^[\x21-\x7e]+$'::text) AND (octet_length(stripe_object_id) <= 255))),
    CONSTRAINT ledger_entries_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 128))),
    CONSTRAINT ledger_spend_has_its_key CHECK (((kind <> 'spend'::text) OR ((amount_cents < 0) AND (idempotency_key IS NOT NULL)))),
    CONSTRAINT ledger_spend_reversal_names_its_spend CHECK (((kind <> 'spend_reversal'::text) OR ((amount_cents > 0) AND (reverses_entry_id IS NOT NULL)))),
    CONSTRAINT ledger_top_up_is_a_paid_credit CHECK (((kind <> 'top_up'::text) OR ((amount_cents > 0) AND (stripe_intent_id IS NOT NULL))))
);

ALTER TABLE public.ledger_entries ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.ledger_entries_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

CREATE TABLE public.parked_stripe_events (
    event_id text NOT NULL,
    event_type text NOT NULL,
    object_id text,
    payload text NOT NULL,
    attempts integer NOT NULL,
    last_error text NOT NULL,
    first_failed_at timestamp with time zone NOT NULL,
    last_failed_at timestamp with time zone NOT NULL,
    next_attempt_at timestamp with time zone NOT NULL,
    CONSTRAINT parked_stripe_events_attempts_check CHECK ((attempts >= 1))
);

CREATE TABLE public.payments (
    stripe_intent_id text NOT NULL,
    user_id text NOT NULL,
    amount_cents bigint NOT NULL,
    amount_received_cents bigint DEFAULT 0 NOT NULL,
    currency text NOT NULL,
    status text NOT NULL,
    failure_code text,
    failure_message text,
    idempotency_key text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    amount_refunded_cents bigint DEFAULT 0 NOT NULL,
    amount_disputed_cents bigint DEFAULT 0 NOT NULL,
    CONSTRAINT payments_amount_cents_check CHECK ((amount_cents > 0)),
    CONSTRAINT payments_amount_disputed_cents_check CHECK ((amount_disputed_cents >= 0)),
    CONSTRAINT payments_amount_received_cents_check CHECK ((amount_received_cents >= 0)),
    CONSTRAINT payments_amount_refunded_cents_check CHECK ((amount_refunded_cents >= 0)),
    CONSTRAINT payments_currency_check CHECK ((currency ~ '^[a-z]{3}$'::text)),
    CONSTRAINT payments_idempotency_key_check CHECK (((length(idempotency_key) >= 1) AND (length(idempotency_key) <= 255))),
    CONSTRAINT payments_status_check CHECK ((status = ANY (ARRAY['requires_payment_method'::text, 'requires_confirmation'::text, 'requires_action'::text, 'processing'::text, 'requires_capture'::text, 'canceled'::text, 'succeeded'::text]))),
    CONSTRAINT payments_stripe_intent_id_check CHECK ((stripe_intent_id <> ''::text)),
    CONSTRAINT payments_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 128)))
);

CREATE TABLE public.reconciliation_cursor (
    singleton boolean DEFAULT true NOT NULL,
    events_created_at bigint NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    events_last_id text,
    events_seek_id text,
    CONSTRAINT reconciliation_cursor_events_created_at_check CHECK ((events_created_at >= 0)),
    CONSTRAINT reconciliation_cursor_singleton_check CHECK (singleton)
);

CREATE TABLE public.schema_functions (
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT schema_functions_name_check CHECK ((name ~ '^[a-z_]+$'::text)),
    CONSTRAINT schema_functions_sha256_check CHECK ((sha256 ~ '^[0-9a-f]{64}$'::text))
);

CREATE TABLE public.stripe_events (
    event_id text NOT NULL,
    event_type text NOT NULL,
    stripe_intent_id text NOT NULL,
    user_id text NOT NULL,
    payload text NOT NULL,
    received_at timestamp with time zone NOT NULL,
    processed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT stripe_events_event_id_check CHECK ((event_id <> ''::text)),
    CONSTRAINT stripe_events_user_id_check CHECK (((length(user_id) >= 1) AND (length(user_id) <= 128)))
);

ALTER TABLE ONLY public.__diesel_schema_migrations
    ADD CONSTRAINT __diesel_schema_migrations_pkey PRIMARY KEY (version);

ALTER TABLE ONLY public.balances
    ADD CONSTRAINT balances_pkey PRIMARY KEY (user_id);

ALTER TABLE ONLY public.deployment
    ADD CONSTRAINT deployment_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY public.ignored_stripe_events
    ADD CONSTRAINT ignored_stripe_events_pkey PRIMARY KEY (event_id);

ALTER TABLE ONLY public.intent_owners
    ADD CONSTRAINT intent_owners_intent_user_unique UNIQUE (stripe_intent_id, user_id);

ALTER TABLE ONLY public.intent_owners
    ADD CONSTRAINT intent_owners_pkey PRIMARY KEY (stripe_intent_id);

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_entries_pkey PRIMARY KEY (user_id, id);

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_one_entry_per_key_and_kind UNIQUE (user_id, kind, idempotency_key);

ALTER TABLE ONLY public.parked_stripe_events
    ADD CONSTRAINT parked_stripe_events_pkey PRIMARY KEY (event_id);

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_pkey PRIMARY KEY (user_id, stripe_intent_id);

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_user_idempotency_key_unique UNIQUE (user_id, idempotency_key);

ALTER TABLE ONLY public.reconciliation_cursor
    ADD CONSTRAINT reconciliation_cursor_pkey PRIMARY KEY (singleton);

ALTER TABLE ONLY public.schema_functions
    ADD CONSTRAINT schema_functions_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.stripe_events
    ADD CONSTRAINT stripe_events_pkey PRIMARY KEY (user_id, event_id);

CREATE UNIQUE INDEX ledger_one_entry_per_stripe_object ON public.ledger_entries USING btree (user_id, kind, stripe_object_id) WHERE (stripe_object_id IS NOT NULL);

CREATE UNIQUE INDEX ledger_one_reversal_per_entry ON public.ledger_entries USING btree (user_id, reverses_entry_id) WHERE (reverses_entry_id IS NOT NULL);

CREATE UNIQUE INDEX ledger_one_top_up_per_intent ON public.ledger_entries USING btree (user_id, stripe_intent_id) WHERE (kind = 'top_up'::text);

CREATE INDEX parked_stripe_events_due ON public.parked_stripe_events USING btree (next_attempt_at);

CREATE INDEX payments_by_user_newest_first ON public.payments USING btree (user_id, created_at DESC, stripe_intent_id DESC);

CREATE INDEX payments_open_by_updated_at ON public.payments USING btree (updated_at) WHERE (status <> ALL (ARRAY['succeeded'::text, 'canceled'::text]));

CREATE INDEX payments_open_by_user ON public.payments USING btree (user_id, created_at DESC) WHERE (status <> ALL (ARRAY['succeeded'::text, 'canceled'::text]));

CREATE INDEX payments_succeeded_by_updated_at ON public.payments USING btree (updated_at) WHERE (status = 'succeeded'::text);

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_entries_payment_fkey FOREIGN KEY (user_id, stripe_intent_id) REFERENCES public.payments(user_id, stripe_intent_id);

ALTER TABLE ONLY public.ledger_entries
    ADD CONSTRAINT ledger_reversal_entry_fkey FOREIGN KEY (user_id, reverses_entry_id) REFERENCES public.ledger_entries(user_id, id);

ALTER TABLE ONLY public.payments
    ADD CONSTRAINT payments_intent_owner_fkey FOREIGN KEY (stripe_intent_id, user_id) REFERENCES public.intent_owners(stripe_intent_id, user_id);
