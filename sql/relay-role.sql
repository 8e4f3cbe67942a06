-- relay-role.sql: a least-privilege login role for outbox-relay (run as a superuser: psql -f).
-- The relay needs REPLICATION to create and read its slot over a replication connection, and
-- CONNECT on the database. Streaming reads the WAL, not the tables, but the relay now reads
-- outbox.events to publish the rows its slot cannot deliver (first start, lost slot:
-- docs/exactly-once.md), so it gets SELECT on it and on outbox.purge_state (below), and no
-- other table privilege. Set the password afterwards: \password outbox_relay
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
-- rows. purge() is SECURITY DEFINER, so the role gets no DELETE on outbox.events: it can remove
-- rows past the age it passes and nothing else. Skipped while the kit is not installed: run this
-- file again after installing or upgrading sql/outbox.sql.
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

-- Recovery (docs/exactly-once.md, "The life of a deployment"): the relay reads outbox.events to
-- publish the rows its slot cannot deliver (the rows committed before its first start, or after
-- its checkpoint when the slot was lost), and outbox.purge_state (SQL kit 1.2) to know whether
-- purge() deleted any of them. Each grant is skipped while its table does not exist: run this
-- file again after installing or upgrading sql/outbox.sql. Other outbox tables in the relay's
-- sources need the same: GRANT USAGE ON SCHEMA app TO outbox_relay; GRANT SELECT ON app.outbox ...
DO $$
BEGIN
    IF to_regclass('outbox.events') IS NULL THEN
        RAISE NOTICE 'outbox.events is not installed here (sql/outbox.sql): no SELECT grant';
        RETURN;
    END IF;
    GRANT USAGE ON SCHEMA outbox TO outbox_relay;
    GRANT SELECT ON outbox.events TO outbox_relay;
    IF to_regclass('outbox.purge_state') IS NULL THEN
        RAISE NOTICE 'outbox.purge_state is not installed here (sql/outbox.sql 1.2): no SELECT grant on it';
        RETURN;
    END IF;
    GRANT SELECT ON outbox.purge_state TO outbox_relay;
END
$$;
