-- apply_stripe_event: its body lives in migrations/functions/apply_stripe_event.sql.
-- Nothing else to do: the functions are not versioned.
SELECT 1;
