DROP INDEX ledger_one_entry_per_stripe_object;
ALTER TABLE ledger_entries
    ADD CONSTRAINT ledger_one_entry_per_stripe_object UNIQUE (user_id, kind, stripe_object_id);
