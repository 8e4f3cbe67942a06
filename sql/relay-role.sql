-- relay-role.sql: a least-privilege login role for outbox-relay (run as a superuser: psql -f).
-- The relay needs REPLICATION to create and read its slot over a replication connection, and
-- CONNECT on the database. Logical decoding reads the catalogs, not the tables, so it needs no
-- SELECT on outbox.events. Set the password afterwards: \password outbox_relay
\set ON_ERROR_STOP on

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'outbox_relay') THEN
        CREATE ROLE outbox_relay WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOINHERIT CONNECTION LIMIT 4;
    ELSE
        ALTER ROLE outbox_relay WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE
            NOINHERIT CONNECTION LIMIT 4;
    END IF;
END
$$;

SELECT format('GRANT CONNECT ON DATABASE %I TO outbox_relay', current_database()) \gexec

-- Change capture (docs/change-capture.md): snapshots read the captured tables, so the role needs
-- SELECT on them (streaming changes needs nothing more). For example:
--   GRANT USAGE ON SCHEMA app TO outbox_relay;
--   GRANT SELECT ON app.users, app.documents TO outbox_relay;
-- It uses one more connection for catalog reads and snapshots (CONNECTION LIMIT 4 leaves room).

-- Retention (SQL kit 1.1 and later): lets the relay run outbox.purge(), which deletes old outbox
-- rows. purge() is SECURITY DEFINER, so the role gets no DELETE or SELECT on outbox.events: it
-- can remove rows past the age it passes and nothing else. Skipped while the kit is not
-- installed: run this file again after installing or upgrading sql/outbox.sql.
DO $$
BEGIN
    IF to_regprocedure('outbox.purge(interval, integer)') IS NULL THEN
        RAISE NOTICE 'outbox.purge() is not installed here (sql/outbox.sql 1.1): no retention grant';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA outbox TO outbox_relay;
    GRANT EXECUTE ON FUNCTION outbox.purge(interval, integer) TO outbox_relay;
END
$$;
