-- This deployment's identity, made once at its first start. Every
-- PaymentIntent carries it (metadata[deployment]), so two deployments that
-- share a Stripe account (staging and production, two regions) never
-- recover and credit each other's intents. Not user-owned: one row.
CREATE TABLE deployment (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    id        text    NOT NULL CHECK (id ~ '^dep_[0-9a-f]{32}$')
);

INSERT INTO deployment (id) VALUES ('dep_' || replace(gen_random_uuid()::text, '-', ''));
