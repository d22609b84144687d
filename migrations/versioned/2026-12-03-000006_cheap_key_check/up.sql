-- The ledger's key check without a bounded repeat: PostgreSQL's regex engine
-- unrolls `{1,255}` into 255 states, and matching `^[\x21-\x7e]{1,255}$`
-- cost about 31 µs per row against 0.6 µs for the same rule written as
-- below (measured over 64,000 keys): half the cost of inserting a spend.
ALTER TABLE ledger_entries
    DROP CONSTRAINT ledger_entries_idempotency_key_check,
    ADD CONSTRAINT ledger_entries_idempotency_key_check
        CHECK (idempotency_key ~ '^[\x21-\x7e]+$' AND octet_length(idempotency_key) <= 255);
