-- apply_stripe_event: one home for this function. payments-grpc migrate applies it
-- after the versioned migrations whenever this file changes
-- (migrations/README.md); the versioned migrations never repeat it.
--
-- The write of the webhook's money transaction (and of a sync's or a
-- reconciliation pass's), as one function: one round trip, one transaction
-- (the caller's statement), one user's rows. On Citus it is distributed by
-- its first argument (deploy/citus/distribute.sql), so the coordinator hands
-- the whole call to the worker holding the user. The decision (next status,
-- amount to credit) is the service's (payments-core/src/service/apply_event.rs);
-- this only writes it, with its guards:
--   * the event row is written once per (user, event id): a second delivery
--     (even a concurrent one: ON CONFLICT waits for it) writes nothing; a
--     NULL event id (a sync, a reconciliation pass) writes no event row and
--     rests on the two guards below;
--   * compare-and-set: the payment is updated (which locks it) only while it
--     still holds the status and amount received the decision was made
--     from; otherwise nothing is left written and the service reads the
--     payment again (rare: two events of one intent at once);
--   * at most one top-up credit per intent (`ledger_one_top_up_per_intent`):
--     the balance is moved first (its new value is the entry's balance
--     after), then the credit written; if the credit already exists, the
--     balance is moved back in the same transaction.
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
