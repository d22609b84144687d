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

-- apply_stripe_event: its body lives in migrations/functions/apply_stripe_event.sql.

-- spend_credits: its body lives in migrations/functions/spend_credits.sql.

-- reverse_spend: its body lives in migrations/functions/reverse_spend.sql.
