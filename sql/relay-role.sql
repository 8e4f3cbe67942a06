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
