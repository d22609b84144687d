-- Spends, reversals and adjustments cannot be kept once their kinds go.
-- Their balance moves go with them.
UPDATE balances AS b
   SET balance_cents = b.balance_cents - moved.total
  FROM (SELECT user_id, sum(amount_cents) AS total FROM ledger_entries
         WHERE kind <> 'top_up' GROUP BY user_id) AS moved
 WHERE moved.user_id = b.user_id;
DELETE FROM ledger_entries WHERE kind <> 'top_up';
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_reversal_entry_fkey,
    DROP CONSTRAINT ledger_one_reversal_per_entry,
    DROP CONSTRAINT ledger_one_entry_per_key_and_kind,
    DROP CONSTRAINT ledger_adjustment_is_explained,
    DROP CONSTRAINT ledger_spend_reversal_names_its_spend,
    DROP CONSTRAINT ledger_spend_has_its_key,
    DROP CONSTRAINT ledger_entries_kind_check,
    ADD CONSTRAINT ledger_entries_kind_check CHECK (kind = 'top_up');
ALTER TABLE ledger_entries
    DROP COLUMN reverses_entry_id,
    DROP COLUMN actor,
    DROP COLUMN reason,
    DROP COLUMN idempotency_key,
    DROP COLUMN balance_after_cents;
