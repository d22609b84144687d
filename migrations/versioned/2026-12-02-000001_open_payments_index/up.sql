-- A user's unpaid intents, newest first: counted (at most the cap) before
-- each create, so an intent flood stops at a few rows read.
CREATE INDEX payments_open_by_user ON payments (user_id, created_at DESC)
    WHERE status NOT IN ('succeeded', 'canceled');
