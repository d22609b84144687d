DROP FUNCTION adjust_balance(text, bigint, text, text, text, text, timestamptz);
