-- A user's payments newest first (ListPayments, GET /payments): read by a
-- keyset cursor (created_at, stripe_intent_id), never an OFFSET.
CREATE INDEX payments_by_user_newest_first
    ON payments (user_id, created_at DESC, stripe_intent_id DESC);
