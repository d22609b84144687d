-- spend_credits_batch: its body lives in migrations/functions/spend_credits_batch.sql.
-- Nothing else to do: the functions are not versioned.
SELECT 1;
