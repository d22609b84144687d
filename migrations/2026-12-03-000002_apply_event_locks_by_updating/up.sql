-- apply_stripe_event without its separate lock: the compare-and-set UPDATE
-- of the payment takes the row lock itself. Before, `SELECT … FOR UPDATE`
-- locked the row (a lock written to the tuple and the WAL) and the UPDATE
-- then wrote it again; the same guards now cost one write of the row
-- (pgbench of the webhook's statements, docs/performance.md).
-- Same arguments, same answers, same guards:
--   * the event row is written once per (user, event id): a second delivery
--     (even a concurrent one: ON CONFLICT waits for it) writes nothing;
--   * compare-and-set: the payment is updated only while it still holds the
--     status and amount received the decision was made from; otherwise the
--     event row just written is removed again, nothing is left written, and
--     the service reads the payment again (rare: two events of one intent
--     at once);
--   * at most one top-up credit per intent (the ledger's unique key), and the
--     balance moves only with a credit written here.
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
        INSERT INTO ledger_entries
            (user_id, amount_cents, currency, kind, stripe_intent_id, stripe_event_id, created_at)
        VALUES (p_user_id, p_credit_cents, p_currency, 'top_up', p_intent_id, p_event_id, p_processed_at)
        ON CONFLICT (user_id, stripe_intent_id, kind) DO NOTHING;
        IF FOUND THEN
            INSERT INTO balances AS b (user_id, balance_cents, currency, updated_at)
            VALUES (p_user_id, p_credit_cents, p_currency, p_processed_at)
            ON CONFLICT (user_id) DO UPDATE
               SET balance_cents = b.balance_cents + excluded.balance_cents,
                   updated_at = excluded.updated_at
            RETURNING b.balance_cents INTO new_balance_cents;
        END IF;
    END IF;
END
$$;
