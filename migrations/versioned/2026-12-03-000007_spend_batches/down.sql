-- Nothing else to do: the functions are not versioned.
SELECT 1;
