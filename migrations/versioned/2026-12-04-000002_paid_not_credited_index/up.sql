-- The metrics scrape's look for paid payments without their top-up
-- (payments_paid_not_credited) reads only those updated since its last
-- look, not every paid payment at every scrape. IF NOT EXISTS: on a large
-- table, build it beforehand with CREATE INDEX CONCURRENTLY (docs/operating.md,
-- "Upgrading").
CREATE INDEX IF NOT EXISTS payments_succeeded_by_updated_at ON payments (updated_at)
    WHERE status = 'succeeded';
