DROP INDEX ledger_one_reversal_per_entry;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_one_reversal_per_entry UNIQUE (user_id, reverses_entry_id);

