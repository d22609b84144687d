-- adjust_balance: its body lives in migrations/functions/adjust_balance.sql.
-- Nothing else to do: the functions are not versioned.
SELECT 1;
