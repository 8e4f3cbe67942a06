-- outbox.sql: the outbox-relay SQL kit, version 1.3 (see docs/sql.md).
--
--   psql -v ON_ERROR_STOP=1 -d app -f sql/outbox.sql
--
-- One file installs the kit, upgrades an older install in place (1.0, 1.1 or 1.2 -> 1.3) and can be
-- run again at any time: every statement is CREATE ... IF NOT EXISTS, CREATE OR REPLACE or a
-- guarded DO block, all in one transaction, so a failure changes nothing. It refuses to run
-- over a newer kit.
--
-- What it provides, all in schema outbox:
--   outbox.events                 the outbox table (the relay reads its inserts from the WAL)
--   outbox.purge_state            the newest commit time among the rows purge() deleted
--   outbox.publish(...)           writes one event row in the caller's transaction
--   outbox.emit(...)              publishes one event as a transactional logical message, no row
--   outbox.add_event_trigger(...) turns the row changes of a table into domain events
--   outbox.drop_event_trigger(...)
--   outbox.table_event()          the trigger function behind add_event_trigger()
--   outbox.purge(...)             batched deletion of old outbox rows (retention)
--   outbox.kit_version()          the installed kit version, '1.3'
\set ON_ERROR_STOP on

BEGIN;

-- ---------------------------------------------------------------------------------------------
-- 0. Which kit is installed? One installer at a time; never downgrade.
-- ---------------------------------------------------------------------------------------------
-- The version found is kept in the transaction-local setting outbox_kit.previous for the steps
-- below: '' = nothing installed, '1.0' = the first kit (outbox.events without kit_version()),
-- else what kit_version() returned ('1.1', '1.2', '1.3').
DO $$
DECLARE
    this_version constant text := '1.3';
    installed text;
BEGIN
    -- 122550254464888 is 'outbox' in ASCII: concurrent runs of this file wait for each other.
    PERFORM pg_advisory_xact_lock(122550254464888);

    IF to_regprocedure('outbox.kit_version()') IS NOT NULL THEN
        EXECUTE 'SELECT outbox.kit_version()' INTO installed;
    ELSIF to_regclass('outbox.events') IS NOT NULL THEN
        installed := '1.0';
    END IF;

    IF installed IS NOT NULL
       AND string_to_array(installed, '.')::int[] > string_to_array(this_version, '.')::int[] THEN
        RAISE EXCEPTION 'outbox kit % is installed, this file is the older %: nothing changed',
            installed, this_version
            USING HINT = 'Run the outbox.sql of the installed version or a newer one.';
    END IF;

    PERFORM set_config('outbox_kit.previous', coalesce(installed, ''), true);
    IF installed IS NULL THEN
        RAISE NOTICE 'outbox kit: installing %', this_version;
    ELSIF installed <> this_version THEN
        RAISE NOTICE 'outbox kit: upgrading % to %', installed, this_version;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- 1. Schema and table (unchanged since 1.0)
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS outbox;

-- One row per event. A service inserts it in the same transaction as the state change it
-- describes; the relay reads the insert from the WAL and publishes it to Kafka. It reads the
-- table itself only for the rows its slot cannot deliver (its first start, a lost slot:
-- docs/exactly-once.md), so a row deleted early is lost to that recovery only (see purge()).
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

-- Upgrade steps of later versions go here, each one safe to run again, e.g.
--   ALTER TABLE outbox.events ADD COLUMN IF NOT EXISTS ...;
-- or, for what has no IF NOT EXISTS form, a DO block testing the catalogs first.

-- 1.2: seq, the order rows were written in. The relay reads rows back from the table for what
-- its slot cannot deliver (docs/exactly-once.md) and publishes the rows of one transaction in
-- this order, as the WAL has them. (A row's cmin says the same until crash recovery or a standby
-- replays it: replay sets it to 0.) Rows written before 1.2 have none. Any role may draw from the
-- sequence: a publisher needs no privilege beyond INSERT on outbox.events.
CREATE SEQUENCE IF NOT EXISTS outbox.events_seq;
ALTER TABLE outbox.events ADD COLUMN IF NOT EXISTS seq bigint;
ALTER TABLE outbox.events ALTER COLUMN seq SET DEFAULT nextval('outbox.events_seq');
ALTER SEQUENCE outbox.events_seq OWNED BY outbox.events.seq;
GRANT USAGE ON SEQUENCE outbox.events_seq TO PUBLIC;

-- 1.2: txid, the writing transaction's top-level xid (pg_current_xact_id()). A row written under
-- a savepoint (a nested atomic block, an EXCEPTION clause) has the savepoint's own xid as xmin,
-- while the stream names the top-level one; the relay tells rows by this column. Rows written
-- before 1.2 have none.
ALTER TABLE outbox.events ADD COLUMN IF NOT EXISTS txid xid8;
ALTER TABLE outbox.events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- 1.3: schema_version, the version of the event type's contract the payload follows (the relay
-- converts or checks it by <event_type>.v<N>.avsc and publishes it as the header schema_version;
-- docs/schemas.md). NULL: an event without a version (<event_type>.avsc). Nullable without a
-- default, so adding it is instant; publish() and emit() refuse a version below 1. A column of that
-- name the application added itself with another type (a text "1.0") is not taken over: refused.
DO $$
DECLARE
    found text;
BEGIN
    SELECT format_type(atttypid, atttypmod) INTO found
      FROM pg_attribute
     WHERE attrelid = to_regclass('outbox.events') AND attname = 'schema_version'
       AND NOT attisdropped AND atttypid <> 'integer'::regtype;
    IF found IS NOT NULL THEN
        RAISE EXCEPTION 'outbox.events already has a column schema_version of type %, kit 1.3 needs one of type integer: nothing changed', found
            USING HINT = 'Rename that column (or convert it to integer version numbers), then run this file again.';
    END IF;
END
$$;
ALTER TABLE outbox.events ADD COLUMN IF NOT EXISTS schema_version integer;

-- 1.1: purge() finds old rows by created_at. On a big 1.0 table, build this index beforehand
-- without blocking writers (same name, then this line does nothing):
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS events_created_at_idx ON outbox.events (created_at);
CREATE INDEX IF NOT EXISTS events_created_at_idx ON outbox.events (created_at);

-- ---------------------------------------------------------------------------------------------
-- 2. The table path: outbox.publish() (behaviour unchanged since 1.0; 1.3 adds schema_version)
-- ---------------------------------------------------------------------------------------------
-- 1.3 adds a trailing parameter. CREATE OR REPLACE cannot add one, and the old signature next to
-- the new would make every 4- or 5-argument call ambiguous, so an older publish() (or emit(),
-- section 3) is renamed out of the way first and dropped once its privileges are copied to the
-- new one (section 6): a publisher that could call it still can, with the
-- same arguments. Nothing is renamed when the old signature is gone (run again: a no-op).
-- An object of the application bound to the old function (a BEGIN ATOMIC function or procedure
-- calling it, a view) would stop the drop: refused up front, naming it.
DO $$
DECLARE
    bound text;
BEGIN
    SELECT string_agg(pg_describe_object(d.classid, d.objid, d.objsubid), ', ') INTO bound
      FROM pg_depend d
     WHERE d.refclassid = 'pg_proc'::regclass AND d.deptype = 'n'
       AND d.refobjid IN (SELECT p FROM (VALUES (to_regprocedure('outbox.publish(text, text, text, jsonb, jsonb)')),
                                                (to_regprocedure('outbox.emit(text, text, text, jsonb, jsonb, text)'))) v(p)
                           WHERE p IS NOT NULL);
    IF bound IS NOT NULL THEN
        RAISE EXCEPTION 'outbox kit 1.3 replaces outbox.publish() and outbox.emit() with new versions, and % is bound to the old one: nothing changed', bound
            USING HINT = 'Drop it, run this file, then create it again unchanged: the same calls work with 1.3.';
    END IF;
    IF to_regprocedure('outbox.publish(text, text, text, jsonb, jsonb)') IS NOT NULL THEN
        ALTER FUNCTION outbox.publish(text, text, text, jsonb, jsonb) RENAME TO publish_before_1_3;
    END IF;
    IF to_regprocedure('outbox.emit(text, text, text, jsonb, jsonb, text)') IS NOT NULL THEN
        ALTER FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text) RENAME TO emit_before_1_3;
    END IF;
END
$$;

-- Publishes an event inside the caller's transaction: nothing is sent unless it commits.
-- 1.1: PL/pgSQL, so that the id comes back without INSERT ... RETURNING, which needed SELECT
-- on outbox.events; a publishing role now needs INSERT only (and cannot read others' events).
CREATE OR REPLACE FUNCTION outbox.publish(
    aggregate_type text,
    aggregate_id   text,
    event_type     text,
    payload        jsonb,
    headers        jsonb   DEFAULT NULL,
    schema_version integer DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
BEGIN
    IF schema_version < 1 THEN
        RAISE EXCEPTION 'outbox.publish: schema_version must be 1 or more (or null), not %', schema_version
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO outbox.events (id, aggregate_type, aggregate_id, event_type, payload, headers,
                               schema_version)
    VALUES (event_id, publish.aggregate_type, publish.aggregate_id, publish.event_type,
            publish.payload, publish.headers, publish.schema_version);
    RETURN event_id;
END
$$;

COMMENT ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb, integer) IS
    'Writes one outbox event in the current transaction; returns its id';

-- ---------------------------------------------------------------------------------------------
-- 3. The message path: outbox.emit()
-- ---------------------------------------------------------------------------------------------
-- Publishes an event without a table row: a transactional logical decoding message (prefix
-- 'outbox' by default) whose content is the message envelope, built by json_build_object so that
-- its members keep this order and payload/headers keep their text (docs/sql.md):
--   {"id" : "<uuid>", "aggregate_type" : "...", "aggregate_id" : "...", "event_type" : "...",
--    "headers" : <headers::text or null>, "payload" : <payload::text>}
-- With a schema_version (1.3), "schema_version" : N comes after "event_type" (envelope v2); without
-- one the envelope is v1, byte for byte as before.
-- Transactional (first argument true): decoding hands the message out with its transaction at
-- commit, and never when the transaction rolls back.
CREATE OR REPLACE FUNCTION outbox.emit(
    aggregate_type text,
    aggregate_id   text,
    event_type     text,
    payload        jsonb,
    headers        jsonb   DEFAULT NULL,
    prefix         text    DEFAULT 'outbox',
    schema_version integer DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql
VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    event_id uuid := gen_random_uuid();
    envelope json;
BEGIN
    -- The same rules as outbox.events' NOT NULL and CHECK constraints.
    IF aggregate_type IS NULL OR aggregate_id IS NULL OR event_type IS NULL OR payload IS NULL THEN
        RAISE EXCEPTION 'outbox.emit: aggregate_type, aggregate_id, event_type and payload must not be null'
            USING ERRCODE = 'not_null_violation';
    END IF;
    IF headers IS NOT NULL AND jsonb_typeof(headers) <> 'object' THEN
        RAISE EXCEPTION 'outbox.emit: headers must be a JSON object or null, not %', jsonb_typeof(headers)
            USING ERRCODE = 'check_violation';
    END IF;
    IF schema_version < 1 THEN
        RAISE EXCEPTION 'outbox.emit: schema_version must be 1 or more (or null), not %', schema_version
            USING ERRCODE = 'check_violation';
    END IF;
    -- pg_logical_emit_message() is strict: a null prefix would silently emit nothing.
    IF prefix IS NULL OR prefix = '' THEN
        RAISE EXCEPTION 'outbox.emit: prefix must not be null or empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    IF schema_version IS NULL THEN                -- envelope v1
        envelope := json_build_object(            -- json, not jsonb: order and text are kept
            'id',             event_id::text,
            'aggregate_type', aggregate_type,
            'aggregate_id',   aggregate_id,
            'event_type',     event_type,
            'headers',        headers,            -- JSON null when NULL
            'payload',        payload);           -- payload::text, byte for byte
    ELSE                                          -- envelope v2: v1 plus schema_version
        envelope := json_build_object(
            'id',             event_id::text,
            'aggregate_type', aggregate_type,
            'aggregate_id',   aggregate_id,
            'event_type',     event_type,
            'schema_version', schema_version,
            'headers',        headers,
            'payload',        payload);
    END IF;
    PERFORM pg_logical_emit_message(
        true,            -- transactional: sent at commit, dropped on rollback
        prefix,
        envelope::text);
    RETURN event_id;
END
$$;

COMMENT ON FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text, integer) IS
    'Publishes one event as a transactional logical decoding message (message envelope v1, or v2 with a schema_version), no table row; returns its id';

-- ---------------------------------------------------------------------------------------------
-- 4. Row changes as domain events: outbox.table_event() and outbox.add_event_trigger()
-- ---------------------------------------------------------------------------------------------
-- Trigger function for AFTER INSERT OR UPDATE OR DELETE ... FOR EACH ROW triggers made by
-- outbox.add_event_trigger(), whose arguments it reads:
--   TG_ARGV[0] aggregate_type, [1] key column, [2] event type prefix, [3] 'schema.table',
--   [4..] columns left out of the payload.
-- One event per row change: event_type = prefix || 'Created' | 'Updated' | 'Deleted',
-- aggregate_id = the key column as text, payload = the new row (old row for deletes) as JSON
-- minus the excluded columns, headers = {"op": "c"|"u"|"d", "table": "schema.table"}.
-- An UPDATE that changes no published column publishes nothing.
CREATE OR REPLACE FUNCTION outbox.table_event()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    excluded text[] := '{}';
    row_data jsonb;
    op       text;
    suffix   text;
    key_text text;
BEGIN
    IF TG_LEVEL <> 'ROW' OR TG_WHEN <> 'AFTER' OR TG_NARGS < 4 THEN
        RAISE EXCEPTION 'outbox.table_event() on %.%: create the trigger with outbox.add_event_trigger()',
            TG_TABLE_SCHEMA, TG_TABLE_NAME;
    END IF;
    IF TG_NARGS > 4 THEN
        excluded := TG_ARGV[4:TG_NARGS - 1];
    END IF;

    IF TG_OP = 'INSERT' THEN
        row_data := to_jsonb(NEW);
        op := 'c';
        suffix := 'Created';
    ELSIF TG_OP = 'UPDATE' THEN
        row_data := to_jsonb(NEW);
        IF row_data - excluded = to_jsonb(OLD) - excluded THEN
            RETURN NULL;  -- nothing a consumer could see changed
        END IF;
        op := 'u';
        suffix := 'Updated';
    ELSE
        row_data := to_jsonb(OLD);
        op := 'd';
        suffix := 'Deleted';
    END IF;

    key_text := row_data ->> TG_ARGV[1];  -- taken before the exclusions: the key may be excluded
    IF key_text IS NULL THEN
        RAISE EXCEPTION 'outbox.table_event(): key column % of % is null', TG_ARGV[1], TG_ARGV[3]
            USING ERRCODE = 'not_null_violation';
    END IF;

    PERFORM outbox.publish(
        TG_ARGV[0],
        key_text,
        TG_ARGV[2] || suffix,
        row_data - excluded,
        jsonb_build_object('op', op, 'table', TG_ARGV[3]));
    RETURN NULL;  -- AFTER trigger: the result is ignored
END
$$;

COMMENT ON FUNCTION outbox.table_event() IS
    'Trigger function: publishes each row change as an outbox event (installed by outbox.add_event_trigger)';

-- Creates, or replaces, the trigger outbox_event on tbl. event_type_prefix defaults to the
-- table name in CamelCase (user_accounts -> UserAccounts, events UserAccountsCreated, ...).
-- Every excluded column must exist: a misspelt name must not let a secret through.
CREATE OR REPLACE FUNCTION outbox.add_event_trigger(
    tbl               regclass,
    aggregate_type    text,
    key_column        text,
    event_type_prefix text   DEFAULT NULL,
    exclude_columns   text[] DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel_kind   "char";
    rel_schema name;
    rel_name   name;
    prefix     text := event_type_prefix;
    args       text;
    col        text;
    r          record;
BEGIN
    IF tbl IS NULL OR aggregate_type IS NULL OR aggregate_type = '' OR key_column IS NULL THEN
        RAISE EXCEPTION 'outbox.add_event_trigger: tbl, aggregate_type and key_column are required';
    END IF;
    SELECT c.relkind, n.nspname, c.relname INTO rel_kind, rel_schema, rel_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = tbl;
    IF rel_kind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'outbox.add_event_trigger: % is not a table', tbl;
    END IF;
    IF tbl = 'outbox.events'::regclass THEN
        RAISE EXCEPTION 'outbox.add_event_trigger: not on outbox.events itself';
    END IF;

    FOREACH col IN ARRAY array_prepend(key_column, coalesce(exclude_columns, '{}')) LOOP
        IF col IS NULL OR NOT EXISTS (SELECT FROM pg_attribute
                                       WHERE attrelid = tbl AND attname = col
                                         AND attnum > 0 AND NOT attisdropped) THEN
            RAISE EXCEPTION 'outbox.add_event_trigger: % has no column %', tbl, coalesce(quote_ident(col), 'NULL');
        END IF;
    END LOOP;

    IF prefix IS NULL THEN  -- CamelCase of the table name: order_line_items -> OrderLineItems
        SELECT string_agg(upper(left(part, 1)) || substr(part, 2), '' ORDER BY i) INTO prefix
          FROM unnest(string_to_array(rel_name, '_')) WITH ORDINALITY AS p(part, i);
    END IF;

    args := format('%L, %L, %L, %L', aggregate_type, key_column, prefix, rel_schema || '.' || rel_name);
    FOREACH col IN ARRAY coalesce(exclude_columns, '{}') LOOP
        args := args || ', ' || quote_literal(col);
    END LOOP;
    EXECUTE format('CREATE OR REPLACE TRIGGER outbox_event AFTER INSERT OR UPDATE OR DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION outbox.table_event(%s)', tbl, args);

    -- The trigger publishes with the privileges of whoever changes the table.
    FOR r IN SELECT rolname FROM pg_roles
              WHERE NOT rolsuper AND rolname !~ '^pg_'
                AND has_table_privilege(oid, tbl, 'INSERT, UPDATE, DELETE')
                AND NOT (has_schema_privilege(oid, 'outbox', 'USAGE')
                         AND has_table_privilege(oid, 'outbox.events', 'INSERT')
                         AND has_function_privilege(oid, 'outbox.publish(text,text,text,jsonb,jsonb,integer)', 'EXECUTE'))
    LOOP
        RAISE WARNING 'outbox.add_event_trigger: role % writes to % but cannot publish; its changes will fail', r.rolname, tbl
            USING HINT = 'Grant it USAGE on schema outbox, INSERT on outbox.events and EXECUTE on outbox.publish (docs/sql.md, Grants).';
    END LOOP;
END
$$;

COMMENT ON FUNCTION outbox.add_event_trigger(regclass, text, text, text, text[]) IS
    'Creates or replaces trigger outbox_event on a table: one outbox event per row change';

CREATE OR REPLACE FUNCTION outbox.drop_event_trigger(tbl regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS outbox_event ON %s', tbl);
END
$$;

COMMENT ON FUNCTION outbox.drop_event_trigger(regclass) IS
    'Drops the trigger made by outbox.add_event_trigger (if any)';

-- ---------------------------------------------------------------------------------------------
-- 5. Retention: outbox.purge() and outbox.purge_state
-- ---------------------------------------------------------------------------------------------
-- 1.2: at most one row (id is always true): purged_through, the newest commit time
-- (pg_xact_commit_timestamp of xmin) among all the rows outbox.purge() ever deleted. The relay
-- reads it before recovering a lost slot from outbox.events: when it is later than the
-- checkpoint's boundary, rows the relay would need may be gone, and it refuses to recover
-- rather than lose them silently. No row: purge() deleted nothing with a known commit time
-- (none with track_commit_timestamp off; none for rows committed before it was turned on, or so
-- long ago that PostgreSQL no longer keeps it). Rows deleted some other way (a DELETE, a 1.1
-- purge() before the upgrade) are not recorded.
CREATE TABLE IF NOT EXISTS outbox.purge_state (
    id             boolean     PRIMARY KEY DEFAULT true CHECK (id),
    purged_through timestamptz NOT NULL
);

COMMENT ON TABLE outbox.purge_state IS
    'Newest commit time among the outbox rows outbox.purge() deleted (one row at most); read by outbox-relay before it recovers a lost slot';

-- Deletes outbox rows created more than older_than ago, batch_size rows per DELETE, until none
-- is left; returns how many it deleted. Any age, even '0', is safe for the stream: the relay
-- decodes each insert from the WAL, which keeps the whole row, so a row deleted before the relay
-- got to it is still published. Recovery from a lost slot reads the table, though, and needs the
-- rows committed after the relay's checkpoint: purge() records the newest commit time it deleted
-- in outbox.purge_state, so that the relay can tell (greatest() with what is there: it never
-- moves backwards). Rows locked by another transaction are skipped (left for the next run), so
-- two purges never wait for each other's rows; only at its end, the later of two to update
-- outbox.purge_state (one row) waits there until the other commits. One call is one transaction.
--
-- SECURITY DEFINER: a role allowed to EXECUTE it (the relay, a pg_cron job) can delete old
-- outbox rows and nothing else, without DELETE on outbox.events.
CREATE OR REPLACE FUNCTION outbox.purge(
    older_than interval DEFAULT '1 hour',
    batch_size integer  DEFAULT 10000
) RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- pg_xact_commit_timestamp() raises an error when track_commit_timestamp is off.
    commit_times constant boolean := current_setting('track_commit_timestamp')::bool;
    cutoff       timestamptz;
    deleted      bigint;
    batch_newest timestamptz;
    newest       timestamptz;
    total        bigint := 0;
BEGIN
    IF older_than IS NULL OR older_than < interval '0' THEN
        RAISE EXCEPTION 'outbox.purge: older_than must be a non-negative interval, not %', older_than
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'outbox.purge: batch_size must be at least 1, not %', batch_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cutoff := now() - older_than;

    LOOP
        WITH d AS (
            DELETE FROM outbox.events
             WHERE id IN (SELECT id FROM outbox.events
                           WHERE created_at < cutoff
                           LIMIT batch_size
                             FOR UPDATE SKIP LOCKED)
            RETURNING xmin)
        SELECT count(*),
               -- NULL for a row without a known commit time; max() ignores it.
               max(CASE WHEN commit_times THEN pg_xact_commit_timestamp(d.xmin) END)
          INTO deleted, batch_newest
          FROM d;
        EXIT WHEN deleted = 0;
        total := total + deleted;
        newest := greatest(newest, batch_newest);  -- greatest() ignores NULLs
        RAISE DEBUG 'outbox.purge: deleted a batch of % rows', deleted;
    END LOOP;

    -- Once, after the last batch: the same transaction as the deletes, so the relay sees both or
    -- neither, and the row lock is held for the shortest time.
    IF newest IS NOT NULL THEN
        INSERT INTO outbox.purge_state AS s (purged_through) VALUES (newest)
            ON CONFLICT (id) DO UPDATE
               SET purged_through = greatest(s.purged_through, excluded.purged_through);
    END IF;
    RETURN total;
END
$$;

COMMENT ON FUNCTION outbox.purge(interval, integer) IS
    'Deletes outbox rows older than older_than in batches, records their newest commit time in outbox.purge_state; returns the number deleted';

-- ---------------------------------------------------------------------------------------------
-- 6. Privileges
-- ---------------------------------------------------------------------------------------------
-- Functions are created executable by PUBLIC. The kit revokes that once, when it creates them
-- (fresh install, or upgrade from 1.0); on later runs it leaves privileges to the DBA, so grants
-- made since are kept. The same for outbox.purge_state (1.2), which only purge() writes: no
-- privileges for PUBLIC, should default privileges give it any. Who needs what: docs/sql.md, Grants.
-- 1.3: the privileges of publish() and emit() as they were before 1.3 (renamed in section 2) go
-- to their new signatures, then the old ones are dropped: whoever could call them still can.
-- The new function gets the old one's owner (who may not be the role running this file: a
-- superuser upgrading the kit of another role), then every other grant is made again.
DO $$
DECLARE
    f   record;
    a   record;
BEGIN
    FOR f IN SELECT p.oid AS old, p.proacl AS acl, p.proowner AS owner,
                    CASE p.proname WHEN 'publish_before_1_3'
                         THEN 'outbox.publish(text, text, text, jsonb, jsonb, integer)'
                         ELSE 'outbox.emit(text, text, text, jsonb, jsonb, text, integer)' END AS new
               FROM pg_proc p
              WHERE p.pronamespace = 'outbox'::regnamespace
                AND p.proname IN ('publish_before_1_3', 'emit_before_1_3')
    LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO %s', f.new, f.owner::regrole);
        IF f.acl IS NOT NULL THEN  -- NULL: the default, PUBLIC may execute, as the new one
            EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f.new);
            FOR a IN SELECT (aclexplode(f.acl)).* LOOP
                CONTINUE WHEN a.grantee = f.owner OR a.privilege_type <> 'EXECUTE';
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f.new,
                               CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
                               CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        EXECUTE format('DROP FUNCTION %s', f.old::regprocedure);
    END LOOP;
END
$$;

DO $$
DECLARE
    previous constant text := current_setting('outbox_kit.previous');
    role_oid       oid;
    public_inserts boolean := false;
BEGIN
    IF previous NOT IN ('', '1.0', '1.1') THEN
        RETURN;
    END IF;
    REVOKE ALL ON TABLE outbox.purge_state FROM PUBLIC;
    IF previous = '1.1' THEN
        RETURN;
    END IF;

    IF previous = '1.0' THEN
        -- 1.0 left outbox.publish() executable by PUBLIC: whoever could insert into
        -- outbox.events could publish. Keep it that way for exactly those roles.
        FOR role_oid IN
            SELECT DISTINCT a.grantee
              FROM pg_class c, aclexplode(c.relacl) a
             WHERE c.oid = 'outbox.events'::regclass AND a.privilege_type = 'INSERT'
        LOOP
            IF role_oid = 0 THEN  -- PUBLIC may insert: leave publish() to PUBLIC as well
                public_inserts := true;
            ELSE
                EXECUTE format('GRANT EXECUTE ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb, integer) TO %s',
                               role_oid::regrole);
            END IF;
        END LOOP;
    END IF;
    IF NOT public_inserts THEN
        REVOKE EXECUTE ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb, integer) FROM PUBLIC;
    END IF;

    REVOKE EXECUTE ON FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text, integer) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION outbox.table_event() FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION outbox.add_event_trigger(regclass, text, text, text, text[]) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION outbox.drop_event_trigger(regclass) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION outbox.purge(interval, integer) FROM PUBLIC;
END
$$;

-- ---------------------------------------------------------------------------------------------
-- 7. The version, last: it says 1.3 only once everything above is in place.
-- ---------------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION outbox.kit_version()
RETURNS text
LANGUAGE sql
STABLE
AS $$ SELECT '1.3'::text $$;

COMMENT ON FUNCTION outbox.kit_version() IS 'Version of the outbox-relay SQL kit installed in this database';
COMMENT ON SCHEMA outbox IS 'outbox-relay SQL kit (SELECT outbox.kit_version()); see docs/sql.md';

COMMIT;
