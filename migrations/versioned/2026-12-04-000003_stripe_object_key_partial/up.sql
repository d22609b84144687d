-- One entry per Stripe object (refund, dispute) and kind, as before, but as
-- a partial unique index over the entries that name one. As a constraint
-- over every entry, its (user_id, kind, …) prefix matched a spend's key
-- look-up (user_id, kind, idempotency_key) as well as the right index did:
-- with statistics taken while the ledger was small, the planner read a hot
-- user's every spend through it, filtering on the key (9 ms per look-up at
-- 80,000 spends; the coalesced hot-user spends fell from 8,500/s to 800/s).
-- A look-up that names no Stripe object cannot use this index. What it
-- refuses is unchanged: NULLs never collided.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_one_entry_per_stripe_object;
CREATE UNIQUE INDEX ledger_one_entry_per_stripe_object
    ON ledger_entries (user_id, kind, stripe_object_id) WHERE stripe_object_id IS NOT NULL;
