-- The functions applied from migrations/functions/ go with the table that
-- names them, so reverting every migration leaves an empty database.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_proc p
         WHERE p.pronamespace = 'public'::regnamespace
           AND p.proname IN (SELECT name FROM schema_functions)
    LOOP
        EXECUTE format('DROP FUNCTION %s', v_function);
    END LOOP;
END
$$;
DROP TABLE schema_functions;
