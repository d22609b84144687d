-- Distributes the schema over a Citus cluster. Run once, on the coordinator,
-- after `payments-grpc migrate` has created the tables and before traffic:
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/citus/distribute.sql
-- Tested by scripts/test-citus on Citus 13.2.2 (a coordinator and two
-- workers, PostgreSQL 15; docs/citus.md). payments-grpc finds the citus
-- extension at start and never coalesces spends there:
-- `spend_credits_batch` spans users, so it is not distributed here.
BEGIN;
-- Foreign keys to a reference table need every step over one connection per node.
SET LOCAL citus.multi_shard_modify_mode TO 'sequential';

-- Citus distributes a table only once nothing local points at it: the
-- foreign keys go, and come back (the same definitions as the migrations)
-- once every table is in place.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_payment_fkey;
ALTER TABLE payments DROP CONSTRAINT payments_intent_owner_fkey;

-- An intent's one owner, spread by intent id: a create claims it first, on
-- that one worker, and writes the payment row (on the user's worker) only
-- when the owner is that user (db/payment_inserts.rs), so no create is a
-- two-phase commit. payments' foreign key to it stays on plain PostgreSQL
-- only: Citus keeps none between tables distributed by other columns.
SELECT create_distributed_table('intent_owners', 'stripe_intent_id', colocate_with => 'none');
SELECT create_reference_table('deployment');
SELECT create_reference_table('reconciliation_cursor');
-- schema_functions (which text of each SQL function is applied) is read and
-- written by `payments-grpc migrate` alone: it stays a local table on the
-- coordinator, where the functions are replaced (Citus propagates a
-- CREATE OR REPLACE of a distributed function to the workers).

-- Everything a user owns, colocated: one user's rows on one worker, so a
-- money transaction (every statement filters by user_id) runs there with a
-- plain commit.
SELECT create_distributed_table('payments', 'user_id');
SELECT create_distributed_table('balances', 'user_id', colocate_with => 'payments');
SELECT create_distributed_table('stripe_events', 'user_id', colocate_with => 'payments');
SELECT create_distributed_table('ledger_entries', 'user_id', colocate_with => 'payments');

-- Events that concern no user: spread by their own id, joined with nothing.
SELECT create_distributed_table('ignored_stripe_events', 'event_id', colocate_with => 'none');
-- Events parked until they can be applied (docs/parked-events.md), the same way.
SELECT create_distributed_table('parked_stripe_events', 'event_id', colocate_with => 'ignored_stripe_events');

-- The webhook's write (db/apply.rs) runs where its user's rows are: the
-- coordinator hands each call whole to that worker (one round trip, a plain
-- commit there).
SELECT create_distributed_function(
    'apply_stripe_event(text, text, text, bigint, text, text, text, timestamptz, timestamptz, text, bigint, text, text, bigint, text)',
    'p_user_id', colocate_with => 'payments');
-- A spend and its reversal (db/spends.rs), the same way.
SELECT create_distributed_function(
    'spend_credits(text, bigint, text, text, timestamptz)',
    'p_user_id', colocate_with => 'payments');
SELECT create_distributed_function(
    'reverse_spend(text, text, text, timestamptz)',
    'p_user_id', colocate_with => 'payments');
SELECT create_distributed_function(
    'adjust_balance(text, bigint, text, text, text, text, timestamptz)',
    'p_user_id', colocate_with => 'payments');
-- A refund's or dispute's clawback (db/clawbacks.rs), the same way.
SELECT create_distributed_function(
    'apply_clawback(text, text, text, text, bigint, text, timestamptz)',
    'p_user_id', colocate_with => 'payments');

ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_payment_fkey
    FOREIGN KEY (user_id, stripe_intent_id) REFERENCES payments (user_id, stripe_intent_id);

COMMIT;
