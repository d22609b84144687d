-- apply_stripe_event is not versioned: migrations/functions/apply_stripe_event.sql.
SELECT 1;
