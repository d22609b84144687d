ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_idempotency_key_check,
    ADD CONSTRAINT ledger_entries_idempotency_key_check
        CHECK (idempotency_key ~ '^[\x21-\x7e]{1,255}$');
