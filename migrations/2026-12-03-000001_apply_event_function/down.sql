DROP FUNCTION apply_stripe_event(
    text, text, text, bigint, text, text, text, timestamptz, timestamptz,
    text, bigint, text, text, bigint, text
);
