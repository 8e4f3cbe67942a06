-- tests/data/outbox-1.0.sql: sql/outbox.sql of kit 1.0 (git c398356), unchanged below; the upgrade test installs it. Do not edit.
-- outbox.sql: the outbox schema: outbox.events and outbox.publish(); safe to run again (psql -f).
\set ON_ERROR_STOP on

BEGIN;

CREATE SCHEMA IF NOT EXISTS outbox;

-- One row per event. A service inserts it in the same transaction as the state change it
-- describes; the relay reads the insert from the WAL and publishes it to Kafka.
CREATE TABLE IF NOT EXISTS outbox.events (
    id             uuid        NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    headers        jsonb       CHECK (headers IS NULL OR jsonb_typeof(headers) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE outbox.events IS
    'Events published to Kafka by outbox-relay: topic outbox.<aggregate_type>, key aggregate_id, value payload';

-- Publishes an event inside the caller's transaction: nothing is sent unless it commits.
CREATE OR REPLACE FUNCTION outbox.publish(
    aggregate_type text,
    aggregate_id   text,
    event_type     text,
    payload        jsonb,
    headers        jsonb DEFAULT NULL
) RETURNS uuid
LANGUAGE sql
VOLATILE
AS $$
    INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, headers)
    VALUES (aggregate_type, aggregate_id, event_type, payload, headers)
    RETURNING id;
$$;

COMMENT ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb) IS
    'Writes one outbox event in the current transaction; returns its id';

COMMIT;
