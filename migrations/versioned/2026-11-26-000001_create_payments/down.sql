DROP TABLE ledger_entries;
DROP TABLE stripe_events;
DROP TABLE balances;
DROP TABLE payments;
