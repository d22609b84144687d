-- The SQL functions are no longer versioned: each lives in one file under
-- migrations/functions/, applied after the versioned migrations whenever
-- its text changes (Flyway's repeatable migrations; migrations/README.md).
-- This table remembers which text of each is in the database. One row per
-- function, not a user's: it stays on the coordinator on Citus.
CREATE TABLE schema_functions (
    name       text        PRIMARY KEY CHECK (name ~ '^[a-z_]+$'),
    -- Hex SHA-256 of the file as applied.
    sha256     text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    applied_at timestamptz NOT NULL DEFAULT now()
);
