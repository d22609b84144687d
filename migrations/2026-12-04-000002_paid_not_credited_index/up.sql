-- The metrics scrape's look for paid payments without their top-up
-- (payments_paid_not_credited) reads only those updated since its last
-- look, not every paid payment at every scrape.
CREATE INDEX payments_succeeded_by_updated_at ON payments (updated_at)
    WHERE status = 'succeeded';
