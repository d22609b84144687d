DROP FUNCTION spend_credits_batch(text[], bigint[], text[], text[], timestamptz);
