# test_sql_kit.py: the SQL kit (sql/outbox.sql 1.3, sql/relay-role.sql) run with psql as a user would.
"""Install, re-run and upgrade of the kit; outbox.publish() and outbox.emit() as seen through a
wal2json slot (rollback, message envelope v1); the trigger helper; retention with purge() and
what it records in outbox.purge_state; the relay's role.

Needs only PostgreSQL (the `db` fixture), no Kafka and no relay binary.
"""
import json
import os
import subprocess
import threading
import uuid

import pytest

from harness import REPO_ROOT, wait_for

OUTBOX_SQL = os.path.join(REPO_ROOT, "sql", "outbox.sql")
RELAY_ROLE_SQL = os.path.join(REPO_ROOT, "sql", "relay-role.sql")
OUTBOX_SQL_1_0 = os.path.join(REPO_ROOT, "tests", "data", "outbox-1.0.sql")
OUTBOX_SQL_1_1 = os.path.join(REPO_ROOT, "tests", "data", "outbox-1.1.sql")
OUTBOX_SQL_1_2 = os.path.join(REPO_ROOT, "tests", "data", "outbox-1.2.sql")
KIT_VERSION = "1.3"
PUBLISH = "outbox.publish(text, text, text, jsonb, jsonb, integer)"
EMIT = "outbox.emit(text, text, text, jsonb, jsonb, text, integer)"


def psql_file(db, path, check=True, user=None):
    """Runs one SQL file with psql -X -v ON_ERROR_STOP=1 (as user, default the superuser); returns
    the CompletedProcess."""
    dsn = db.dsn if user is None else db.pg.dsn(dbname=db.name, user=user)
    proc = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-f", path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, "psql -f %s failed:\n%s" % (path, proc.stdout)
    return proc


def install(db):
    return psql_file(db, OUTBOX_SQL)


def one(db, sql, params=None):
    """The single value of a one-row, one-column query."""
    rows = db.query(sql, params)
    assert len(rows) == 1, rows
    return rows[0][0]


def kit_objects(db):
    """Functions, tables, indexes and constraints of schema outbox, with their definitions and ACLs."""
    return db.query("""
        SELECT 'f', p.oid::regprocedure::text, pg_get_functiondef(p.oid), coalesce(p.proacl::text, '')
          FROM pg_proc p WHERE p.pronamespace = 'outbox'::regnamespace
        UNION ALL
        SELECT 'r', c.oid::regclass::text, c.relkind::text, coalesce(c.relacl::text, '')
          FROM pg_class c WHERE c.relnamespace = 'outbox'::regnamespace
        UNION ALL
        SELECT 'c', conrelid::regclass::text || ' ' || conname, pg_get_constraintdef(oid), ''
          FROM pg_constraint WHERE connamespace = 'outbox'::regnamespace
        ORDER BY 1, 2""")


def events_columns(db):
    return db.query("""
        SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE attrelid = 'outbox.events'::regclass AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum""")


EVENTS_COLUMNS = [
    ("id", "uuid", True, "gen_random_uuid()"),
    ("aggregate_type", "text", True, None),
    ("aggregate_id", "text", True, None),
    ("event_type", "text", True, None),
    ("payload", "jsonb", True, None),
    ("headers", "jsonb", False, None),
    ("created_at", "timestamp with time zone", True, "now()"),
    ("seq", "bigint", False, "nextval('outbox.events_seq'::regclass)"),
    ("txid", "xid8", False, "pg_current_xact_id()"),
    ("schema_version", "integer", False, None),
]


@pytest.fixture
def role(pg):
    """Makes cluster-wide login roles with unique names; drops them (and their grants) afterwards."""
    made = []

    def make(prefix="t_role"):
        name = "%s_%s" % (prefix, uuid.uuid4().hex[:8])
        pg.execute('CREATE ROLE "%s" LOGIN' % name)
        made.append(name)
        return name

    yield make
    for name in made:
        for (dbname,) in pg.query("SELECT datname FROM pg_database WHERE datallowconn"):
            pg.execute('DROP OWNED BY "%s"' % name, dbname=dbname)
        pg.execute('DROP ROLE "%s"' % name)


@pytest.fixture
def relay_role(db, pg):
    """Runs sql/relay-role.sql in db (call it again to re-run; returns psql's output); drops the
    role outbox_relay afterwards unless it existed before the test."""
    existed = one(db, "SELECT count(*) FROM pg_roles WHERE rolname = 'outbox_relay'") == 1

    def run():
        return psql_file(db, RELAY_ROLE_SQL).stdout

    yield run
    if not existed and one(db, "SELECT count(*) FROM pg_roles WHERE rolname = 'outbox_relay'") == 1:
        db.execute("DROP OWNED BY outbox_relay")
        pg.execute("DROP ROLE outbox_relay")


class Slot:
    """A wal2json slot in a test database; changes() returns the format-version 2 records since the last call."""

    def __init__(self, db):
        self.db = db
        self.name = "kit_" + uuid.uuid4().hex[:10]
        db.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (self.name,))

    def changes(self, *options):
        rows = self.db.query(
            "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, 'format-version', '2', "
            "'include-xids', '1', 'include-lsn', '1'" + ", %s" * len(options) + ")",
            (self.name,) + options)
        return [json.loads(data) for (data,) in rows]

    def skip(self):
        """Consumes what is there so far (e.g. the empty transactions of DDL)."""
        self.changes()

    def drop(self):
        self.db.execute("SELECT pg_drop_replication_slot(%s)", (self.name,))


@pytest.fixture
def slot(db):
    s = Slot(db)
    yield s
    s.drop()


def envelope(*members):
    """The text json_build_object gives for string members (docs/sql.md, message envelope v1)."""
    return "{" + ", ".join('"%s" : %s' % (k, v) for k, v in members) + "}"


# ---------------------------------------------------------------------------------------------
# install, re-run, upgrade
# ---------------------------------------------------------------------------------------------

def test_install_twice_is_harmless(db, role):
    install(db)
    assert one(db, "SELECT outbox.kit_version()") == KIT_VERSION
    assert events_columns(db) == EVENTS_COLUMNS
    event_id = one(db, "SELECT outbox.publish('user', 'u-1', 'Created', '{\"a\": 1}')")
    app = role("t_app")
    db.execute('GRANT USAGE ON SCHEMA outbox TO "%s"; '
               'GRANT EXECUTE ON FUNCTION %s TO "%s"' % (app, EMIT, app))
    before = kit_objects(db)

    second = install(db)
    assert "ERROR" not in second.stdout
    assert kit_objects(db) == before  # same definitions, and the DBA's grant is kept
    assert one(db, "SELECT count(*) FROM outbox.events WHERE id = %s", (event_id,)) == 1
    assert one(db, "SELECT outbox.kit_version()") == KIT_VERSION


def test_fresh_install_privileges(db):
    install(db)
    # Only kit_version() stays executable by PUBLIC; the rest needs a grant (docs/sql.md, Grants).
    rows = db.query("""SELECT p.proname, has_function_privilege('public', p.oid, 'EXECUTE'), p.prosecdef
                         FROM pg_proc p WHERE p.pronamespace = 'outbox'::regnamespace ORDER BY 1""")
    assert rows == [
        ("add_event_trigger", False, False),
        ("drop_event_trigger", False, False),
        ("emit", False, False),
        ("kit_version", True, False),
        ("publish", False, False),
        ("purge", False, True),
        ("table_event", False, False),
    ]
    # outbox.purge_state: written by purge() only, PUBLIC gets nothing.
    assert one(db, """SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
                       WHERE c.oid = 'outbox.purge_state'::regclass AND a.grantee = 0""") == 0
    assert not one(db, "SELECT has_table_privilege('public', 'outbox.purge_state', 'SELECT, INSERT, UPDATE, DELETE')")


def test_publisher_needs_only_insert(db, role):
    """The grants of docs/sql.md are enough for publish() and emit(): no SELECT on outbox.events."""
    install(db)
    app = role("t_app")
    db.execute(("GRANT USAGE ON SCHEMA outbox TO {r}; GRANT INSERT ON outbox.events TO {r}; "
                "GRANT EXECUTE ON FUNCTION {p} TO {r}; GRANT EXECUTE ON FUNCTION {e} TO {r}")
               .format(r='"%s"' % app, p=PUBLISH, e=EMIT))
    conn = db.pg.connect(dbname=db.name, user=app)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-1', 'Created', '{}')")
            event_id = cur.fetchone()[0]
            cur.execute("SELECT outbox.emit('user', 'u-1', 'Created', '{}')")
            assert cur.fetchone()[0]
    finally:
        conn.close()
    assert one(db, "SELECT aggregate_id FROM outbox.events WHERE id = %s", (event_id,)) == "u-1"


def test_upgrade_from_1_0(db, role):
    psql_file(db, OUTBOX_SQL_1_0)
    assert one(db, "SELECT to_regprocedure('outbox.kit_version()') IS NULL")
    old_id = one(db, "SELECT outbox.publish('user', 'u-1', 'Created', '{\"v\": 1}', '{\"h\": \"x\"}')")
    # A 1.0 publisher: INSERT and SELECT on the table, publish() executable by PUBLIC.
    app = role("t_app")
    db.execute('GRANT USAGE ON SCHEMA outbox TO "{r}"; GRANT INSERT, SELECT ON outbox.events TO "{r}"'
               .format(r=app))

    out = install(db).stdout
    assert "upgrading 1.0 to 1.3" in out
    assert one(db, "SELECT outbox.kit_version()") == KIT_VERSION
    assert events_columns(db) == EVENTS_COLUMNS
    assert one(db, "SELECT payload::text || headers::text FROM outbox.events WHERE id = %s",
               (old_id,)) == '{"v": 1}{"h": "x"}'
    # The role that could publish with 1.0 still can; PUBLIC cannot any more.
    assert one(db, "SELECT has_function_privilege(%%s, '%s', 'EXECUTE')" % PUBLISH,
               (app,))
    assert not one(db, "SELECT has_function_privilege('public', '%s', 'EXECUTE')" % PUBLISH)
    conn = db.pg.connect(dbname=db.name, user=app)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-2', 'Created', '{}')")
    finally:
        conn.close()
    # The new parts are there, and the headers CHECK still holds.
    assert one(db, "SELECT to_regclass('outbox.events_created_at_idx') IS NOT NULL")
    assert one(db, "SELECT outbox.purge('1 day')") == 0
    assert one(db, "SELECT count(*) FROM outbox.purge_state") == 0
    with pytest.raises(Exception, match="events_headers_check"):
        db.execute("SELECT outbox.publish('user', 'u-1', 'X', '{}', '[1]')")
    # And a second 1.3 run changes nothing.
    before = kit_objects(db)
    install(db)
    assert kit_objects(db) == before


def test_upgrade_keeps_public_publish_when_public_could_insert(db):
    psql_file(db, OUTBOX_SQL_1_0)
    db.execute("GRANT INSERT ON outbox.events TO PUBLIC")
    install(db)
    assert one(db, "SELECT has_function_privilege('public', '%s', 'EXECUTE')" % PUBLISH)


def test_upgrade_by_a_superuser_keeps_the_kit_owners_functions(db, role):
    """A kit installed by its own role and upgraded by a superuser: publish() and emit() stay the
    owner's, callable by it and by whoever had a grant, and the owner can run the file again."""
    owner, app = role("t_owner"), role("t_app")
    db.execute('GRANT CREATE ON DATABASE "%s" TO "%s"' % (db.name, owner))
    psql_file(db, OUTBOX_SQL_1_2, user=owner)
    db.execute('GRANT EXECUTE ON FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text) TO "%s"' % app)

    out = install(db).stdout  # as the superuser
    assert "upgrading 1.2 to 1.3" in out
    assert db.query("""SELECT p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p
                        WHERE p.pronamespace = 'outbox'::regnamespace AND p.proname IN ('publish', 'emit')
                        ORDER BY 1""") == [("emit", owner), ("publish", owner)]
    assert one(db, "SELECT has_function_privilege(%%s, '%s', 'EXECUTE')" % EMIT, (app,))
    assert not one(db, "SELECT has_function_privilege('public', '%s', 'EXECUTE')" % PUBLISH)
    conn = db.pg.connect(dbname=db.name, user=owner)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-1', 'Created', '{}', NULL, 2)")
            cur.execute("SELECT outbox.emit('user', 'u-1', 'Created', '{}')")
    finally:
        conn.close()
    before = kit_objects(db)
    second = psql_file(db, OUTBOX_SQL, user=owner)
    assert "ERROR" not in second.stdout
    assert kit_objects(db) == before


def test_upgrade_refuses_up_front_when_a_function_is_bound_to_the_old_publish(db):
    psql_file(db, OUTBOX_SQL_1_2)
    db.execute("""CREATE FUNCTION public.place_order(id text) RETURNS uuid LANGUAGE sql
                  BEGIN ATOMIC SELECT outbox.publish('order', id, 'Placed', '{}'); END""")
    before = kit_objects(db)

    proc = psql_file(db, OUTBOX_SQL, check=False)
    assert proc.returncode != 0
    assert "function place_order(text) is bound to the old one: nothing changed" in proc.stdout
    assert "CASCADE" not in proc.stdout and "before_1_3" not in proc.stdout
    assert one(db, "SELECT outbox.kit_version()") == "1.2"
    assert kit_objects(db) == before


def test_upgrade_refuses_a_schema_version_column_of_another_type(db):
    psql_file(db, OUTBOX_SQL_1_2)
    db.execute("ALTER TABLE outbox.events ADD COLUMN schema_version text")

    proc = psql_file(db, OUTBOX_SQL, check=False)
    assert proc.returncode != 0
    assert ("outbox.events already has a column schema_version of type text, "
            "kit 1.3 needs one of type integer: nothing changed") in proc.stdout
    assert one(db, "SELECT outbox.kit_version()") == "1.2"


def test_upgrade_from_1_1_adds_purge_state_and_equals_a_fresh_install(db, pg, role):
    psql_file(db, OUTBOX_SQL_1_1)
    assert one(db, "SELECT outbox.kit_version()") == "1.1"
    app = role("t_app")
    grant = ('GRANT USAGE ON SCHEMA outbox TO "{r}"; '
             'GRANT EXECUTE ON FUNCTION {f} TO "{r}"')
    grant_1_1 = grant.format(r=app, f="outbox.emit(text, text, text, jsonb, jsonb, text)")
    grant = grant.format(r=app, f=EMIT)
    db.execute(grant_1_1)  # a DBA's grant under 1.1
    kept_id = one(db, "SELECT outbox.publish('user', 'u-1', 'Created', '{\"v\": 1}')")
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                  VALUES ('user', 'u-old', 'E', '{}', now() - interval '2 hours')""")
    assert one(db, "SELECT outbox.purge('1 hour')") == 1  # 1.1's purge() records nothing

    out = install(db).stdout
    assert "upgrading 1.1 to 1.3" in out
    assert one(db, "SELECT outbox.kit_version()") == KIT_VERSION
    assert events_columns(db) == EVENTS_COLUMNS
    assert db.query("SELECT id::text, payload::text FROM outbox.events") == [(kept_id, '{"v": 1}')]
    assert one(db, "SELECT count(*) FROM outbox.purge_state") == 0  # what 1.1 deleted is not known

    # The same objects, definitions and privileges as a fresh 1.3 install given the same grant.
    fresh = pg.create_database("t_fresh_%s" % uuid.uuid4().hex[:8])
    try:
        install(fresh)
        fresh.execute(grant)
        assert kit_objects(db) == kit_objects(fresh)
    finally:
        pg.drop_database(fresh.name)

    # purge() now records what it deletes; a second 1.3 run changes nothing.
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                  VALUES ('user', 'u-old-2', 'E', '{}', now() - interval '2 hours')""")
    committed = one(db, "SELECT pg_xact_commit_timestamp(xmin) FROM outbox.events WHERE aggregate_id = 'u-old-2'")
    assert one(db, "SELECT outbox.purge('1 hour')") == 1
    assert purged_through(db) == committed
    before = kit_objects(db)
    install(db)
    assert kit_objects(db) == before
    assert purged_through(db) == committed


def test_newer_kit_is_not_downgraded(db):
    install(db)
    db.execute("CREATE OR REPLACE FUNCTION outbox.kit_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.10' $$")
    db.execute("DROP FUNCTION " + EMIT)
    proc = psql_file(db, OUTBOX_SQL, check=False)
    assert proc.returncode != 0
    assert "outbox kit 1.10 is installed, this file is the older 1.3" in proc.stdout
    assert one(db, "SELECT to_regprocedure('%s') IS NULL" % EMIT)


# ---------------------------------------------------------------------------------------------
# publish() and emit() through wal2json
# ---------------------------------------------------------------------------------------------

def test_rolled_back_publish_and_emit_leave_nothing(db, slot):
    install(db)
    slot.skip()
    conn = db.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-rb', 'RolledBack', '{\"n\": 1}')")
            cur.execute("SELECT outbox.emit('user', 'u-rb', 'RolledBack', '{\"n\": 2}')")
            emitted = cur.fetchone()[0]
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.emit('user', 'u-ok', 'Committed', '{\"n\": 3}')")
            cur.execute("SAVEPOINT s")
            cur.execute("SELECT outbox.emit('user', 'u-rb', 'RolledBack', '{\"n\": 4}')")
            cur.execute("SELECT outbox.publish('user', 'u-rb', 'RolledBack', '{\"n\": 5}')")
            cur.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
    finally:
        conn.close()

    records = slot.changes()
    text = json.dumps(records)
    assert "u-rb" not in text and emitted not in text and "RolledBack" not in text
    assert one(db, "SELECT count(*) FROM outbox.events") == 0
    messages = [r for r in records if r["action"] == "M"]
    assert len(messages) == 1
    assert json.loads(messages[0]["content"])["aggregate_id"] == "u-ok"


def test_emit_envelope_v1(db, slot):
    install(db)
    slot.skip()
    payload = '{"z": 1, "a": [1, 2.50, 12345678901234567890.000], "s": "é \\" \\\\ \\n \\u0001 ✓"}'
    headers = '{"traceparent": "00-4bf9-01", "x": "y"}'
    conn = db.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s::jsonb::text, %s::jsonb::text", (payload, headers))
            payload_text, headers_text = cur.fetchone()
            cur.execute("SELECT outbox.emit('user', 'u-\"1\"', 'IdDocumentVerified', %s, %s)", (payload, headers))
            id1 = cur.fetchone()[0]
            cur.execute("SELECT outbox.emit('order', 'o-7', 'Placed', '{}', NULL, 'orders-v1')")
            id2 = cur.fetchone()[0]
        conn.commit()
    finally:
        conn.close()

    records = slot.changes()
    assert [r["action"] for r in records] == ["B", "M", "M", "C"]
    m1, m2 = records[1], records[2]
    xid = records[0]["xid"]
    assert m1["transactional"] is True and m1["prefix"] == "outbox" and m1["xid"] == xid
    assert m2["transactional"] is True and m2["prefix"] == "orders-v1"

    # The content is the envelope text (wal2json escapes it once as a JSON string).
    content = m1["content"]
    assert content == envelope(("id", '"%s"' % id1), ("aggregate_type", '"user"'),
                               ("aggregate_id", '"u-\\"1\\""'), ("event_type", '"IdDocumentVerified"'),
                               ("headers", headers_text), ("payload", payload_text))
    assert content.endswith('"payload" : ' + payload_text + "}")
    pairs = json.loads(content, object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in pairs] == ["id", "aggregate_type", "aggregate_id", "event_type", "headers", "payload"]
    members = dict(pairs)
    assert members["id"] == id1 and members["aggregate_id"] == 'u-"1"'
    assert m2["content"] == envelope(("id", '"%s"' % id2), ("aggregate_type", '"order"'),
                                     ("aggregate_id", '"o-7"'), ("event_type", '"Placed"'),
                                     ("headers", "null"), ("payload", "{}"))
    # No table row for emitted events.
    assert one(db, "SELECT count(*) FROM outbox.events") == 0


def test_emit_messages_pass_the_relays_table_filter(db, slot):
    """The relay reads with add-tables (its outbox tables); messages are not filtered by it."""
    install(db)
    slot.skip()
    db.execute("SELECT outbox.emit('user', 'u-1', 'Created', '{}')")
    records = slot.changes("add-tables", "outbox.events", "include-transaction", "1")
    assert [r["action"] for r in records] == ["B", "M", "C"]


def test_emit_refuses_what_publish_refuses(db):
    install(db)
    for args, message in [
        ("'a', 'b', 'c', '{}', '[1]'", "headers must be a JSON object or null, not array"),
        ("'a', 'b', 'c', '{}', '\"s\"'", "headers must be a JSON object or null, not string"),
        ("'a', NULL, 'c', '{}'", "must not be null"),
        ("'a', 'b', 'c', NULL", "must not be null"),
        ("'a', 'b', 'c', '{}', NULL, NULL", "prefix must not be null or empty"),
        ("'a', 'b', 'c', '{}', NULL, ''", "prefix must not be null or empty"),
    ]:
        with pytest.raises(Exception, match=message):
            db.execute("SELECT outbox.emit(%s)" % args)


def test_publish_and_emit_in_a_stored_procedure(db, slot):
    """Both functions work from PL/pgSQL inside the caller's transaction."""
    install(db)
    db.execute("""
        CREATE TABLE orders (id text PRIMARY KEY, status text);
        CREATE PROCEDURE place_order(order_id text) LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO orders VALUES (order_id, 'placed');
            PERFORM outbox.publish('order', order_id, 'OrderPlaced', jsonb_build_object('id', order_id));
            PERFORM outbox.emit('order', order_id, 'OrderPlacedMsg', jsonb_build_object('id', order_id));
        END $$;""")
    slot.skip()
    db.execute("CALL place_order('o-1')")
    records = slot.changes("add-tables", "outbox.events")
    actions = [r["action"] for r in records]
    assert actions == ["B", "I", "M", "C"], records
    assert records[1]["table"] == "events"
    assert json.loads(records[2]["content"])["event_type"] == "OrderPlacedMsg"


# ---------------------------------------------------------------------------------------------
# trigger helper
# ---------------------------------------------------------------------------------------------

def events(db, since=0):
    return db.query("""SELECT aggregate_type, aggregate_id, event_type, payload, headers
                         FROM outbox.events ORDER BY created_at, ctid""")[since:]


def test_trigger_helper_publishes_row_changes(db):
    install(db)
    db.execute("""CREATE TABLE public.user_accounts (
                      id bigint PRIMARY KEY, email text NOT NULL, password_hash text,
                      last_seen timestamptz, active boolean DEFAULT true)""")
    db.execute("SELECT outbox.add_event_trigger('user_accounts', 'user', 'id', "
               "exclude_columns => '{password_hash,last_seen}')")
    db.execute("SELECT outbox.add_event_trigger('user_accounts', 'user', 'id', "
               "exclude_columns => '{password_hash,last_seen}')")  # again: still one trigger
    assert one(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'user_accounts'::regclass") == 1

    db.execute("INSERT INTO user_accounts (id, email, password_hash) VALUES (1001, 'a@example.org', 'secret')")
    db.execute("UPDATE user_accounts SET password_hash = 'secret2', last_seen = now()")  # nothing visible
    db.execute("UPDATE user_accounts SET email = 'b@example.org'")
    db.execute("DELETE FROM user_accounts")
    table = {"op": None, "table": "public.user_accounts"}
    assert events(db) == [
        ("user", "1001", "UserAccountsCreated", {"id": 1001, "email": "a@example.org", "active": True},
         dict(table, op="c")),
        ("user", "1001", "UserAccountsUpdated", {"id": 1001, "email": "b@example.org", "active": True},
         dict(table, op="u")),
        ("user", "1001", "UserAccountsDeleted", {"id": 1001, "email": "b@example.org", "active": True},
         dict(table, op="d")),
    ]
    assert "secret" not in json.dumps(events(db))

    # A rolled-back change publishes nothing.
    conn = db.connect(autocommit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO user_accounts (id, email) VALUES (1002, 'c@example.org')")
    conn.rollback()
    conn.close()
    assert len(events(db)) == 3

    # Own prefix, replaced in place; then dropped: no more events.
    db.execute("SELECT outbox.add_event_trigger('public.user_accounts', 'account', 'email', 'Account')")
    db.execute("INSERT INTO user_accounts (id, email, password_hash) VALUES (7, 'd@example.org', 'pw')")
    assert events(db, 3) == [("account", "d@example.org", "AccountCreated",
                              {"id": 7, "email": "d@example.org", "active": True,
                               "password_hash": "pw", "last_seen": None},
                              {"op": "c", "table": "public.user_accounts"})]
    db.execute("SELECT outbox.drop_event_trigger('user_accounts')")
    db.execute("SELECT outbox.drop_event_trigger('user_accounts')")  # again: harmless
    db.execute("UPDATE user_accounts SET email = 'e@example.org'")
    assert len(events(db)) == 4


def test_trigger_helper_refuses_bad_arguments(db):
    install(db)
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY, password_hash text)")
    db.execute("CREATE VIEW accounts_v AS SELECT * FROM accounts")
    for call, message in [
        ("'accounts', 'a', 'id', NULL, '{passwd_hash}'", "has no column passwd_hash"),
        ("'accounts', 'a', 'key'", "has no column key"),
        ("'accounts', '', 'id'", "are required"),
        ("'accounts_v', 'a', 'id'", "is not a table"),
        ("'outbox.events', 'a', 'id'", "not on outbox.events"),
    ]:
        with pytest.raises(Exception, match=message):
            db.execute("SELECT outbox.add_event_trigger(%s)" % call)
    assert one(db, "SELECT count(*) FROM pg_trigger WHERE tgname = 'outbox_event'") == 0


def test_trigger_helper_with_quoted_names_and_partitions(db):
    install(db)
    db.execute('CREATE SCHEMA "Sales"')
    db.execute('CREATE TABLE "Sales".order_line_items (order_id text, line int, qty int, '
               'PRIMARY KEY (order_id, line)) PARTITION BY HASH (order_id)')
    db.execute('CREATE TABLE "Sales".oli_0 PARTITION OF "Sales".order_line_items '
               'FOR VALUES WITH (MODULUS 1, REMAINDER 0)')
    db.execute("""SELECT outbox.add_event_trigger('"Sales".order_line_items', 'order', 'order_id')""")
    db.execute("""INSERT INTO "Sales".order_line_items VALUES ('o-1', 1, 5)""")
    assert events(db) == [("order", "o-1", "OrderLineItemsCreated", {"order_id": "o-1", "line": 1, "qty": 5},
                           {"op": "c", "table": "Sales.order_line_items"})]


def test_own_trigger_function_from_the_docs(db):
    """The example of docs/sql.md: a team's own event shape through outbox.publish()."""
    install(db)
    db.execute("CREATE TABLE users (id text PRIMARY KEY, status text NOT NULL, email text)")
    db.execute("""
        CREATE FUNCTION users_status_event() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status IS DISTINCT FROM OLD.status THEN
                PERFORM outbox.publish(
                    'user', NEW.id, 'UserStatusChanged',
                    jsonb_build_object('user_id', NEW.id, 'from', OLD.status, 'to', NEW.status));
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER users_status_event AFTER UPDATE OF status ON users
            FOR EACH ROW EXECUTE FUNCTION users_status_event();""")
    db.execute("INSERT INTO users VALUES ('u-1', 'new', 'a@example.org')")
    db.execute("UPDATE users SET status = 'id_verified'")
    db.execute("UPDATE users SET email = 'b@example.org'")
    assert events(db) == [("user", "u-1", "UserStatusChanged",
                           {"user_id": "u-1", "from": "new", "to": "id_verified"}, None)]


def test_trigger_fires_for_a_writer_with_publisher_grants_only(db, role):
    """Writers of an evented table need the publisher grants, not EXECUTE on table_event()."""
    install(db)
    app = role("t_app")
    db.execute('CREATE TABLE items (id int PRIMARY KEY, name text); '
               'GRANT INSERT, UPDATE, DELETE, SELECT ON items TO "%s"' % app)
    conn = db.connect()
    conn.notices.clear()
    with conn.cursor() as cur:
        cur.execute("SELECT outbox.add_event_trigger('items', 'item', 'id')")
    assert any("role %s writes to public.items but cannot publish" % app in n for n in conn.notices), conn.notices
    conn.close()

    def write_as_app():
        c = db.pg.connect(dbname=db.name, user=app)
        try:
            with c.cursor() as cur:
                cur.execute("INSERT INTO items VALUES (1, 'x')")
        finally:
            c.close()

    with pytest.raises(Exception, match="permission denied"):
        write_as_app()
    db.execute(("GRANT USAGE ON SCHEMA outbox TO {r}; GRANT INSERT ON outbox.events TO {r}; "
                "GRANT EXECUTE ON FUNCTION " + PUBLISH + " TO {r}")
               .format(r='"%s"' % app))
    write_as_app()
    assert events(db) == [("item", "1", "ItemsCreated", {"id": 1, "name": "x"}, {"op": "c", "table": "public.items"})]


# ---------------------------------------------------------------------------------------------
# retention
# ---------------------------------------------------------------------------------------------

def test_purge_deletes_old_rows_in_batches(db, slot):
    install(db)
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                  SELECT 'user', 'old-' || i, 'E', '{}', now() - interval '2 hours'
                    FROM generate_series(1, 25) i""")
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload)
                  SELECT 'user', 'new-' || i, 'E', '{}' FROM generate_series(1, 5) i""")
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET client_min_messages = debug1")
            cur.execute("SELECT outbox.purge('1 hour', 10)")
            assert cur.fetchone()[0] == 25
        batches = [n for n in conn.notices if "outbox.purge: deleted a batch of" in n]
        assert [n.split("batch of ")[1].split()[0] for n in batches] == ["10", "10", "5"]
    finally:
        conn.close()
    assert sorted(r[0] for r in db.query("SELECT aggregate_id FROM outbox.events")) == \
        ["new-%d" % i for i in range(1, 6)]
    assert one(db, "SELECT outbox.purge('1 hour')") == 0
    assert one(db, "SELECT outbox.purge()") == 0
    assert one(db, "SELECT outbox.purge('0')") == 5

    # Every purged row's insert is still in the WAL stream: the relay publishes it anyway.
    records = slot.changes("add-tables", "outbox.events")
    inserted = [r for r in records if r["action"] == "I"]
    assert len(inserted) == 30
    assert len([r for r in records if r["action"] == "D"]) == 30

    for bad, message in [("'-1 hour'", "older_than must be a non-negative"), ("NULL", "older_than"),
                         ("'1 hour', 0", "batch_size must be at least 1")]:
        with pytest.raises(Exception, match=message):
            db.execute("SELECT outbox.purge(%s)" % bad)


def test_delete_in_the_same_transaction_still_publishes(db, slot):
    """The retention alternative of docs/sql.md: the row is gone at commit, the insert is in the WAL."""
    install(db)
    slot.skip()
    conn = db.connect(autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-1', 'Created', '{\"k\": 1}')")
            event_id = cur.fetchone()[0]
            cur.execute("DELETE FROM outbox.events WHERE id = %s", (event_id,))
        conn.commit()
    finally:
        conn.close()
    assert one(db, "SELECT count(*) FROM outbox.events") == 0
    records = slot.changes("add-tables", "outbox.events")
    assert [r["action"] for r in records] == ["B", "I", "D", "C"]
    columns = {c["name"]: c["value"] for c in records[1]["columns"]}
    assert columns["id"] == event_id and columns["payload"] == '{"k": 1}'


# ---------------------------------------------------------------------------------------------
# retention: what purge() records for the relay's recovery (outbox.purge_state)
# ---------------------------------------------------------------------------------------------

def insert_old(db, tag, n=1, age="2 hours"):
    """Commits n rows (aggregate_id tag-1 ... tag-n, one transaction) created `age` ago; returns
    their commit time, pg_xact_commit_timestamp(xmin)."""
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                  SELECT 'user', %s || '-' || i, 'E', '{}', now() - %s::interval
                    FROM generate_series(1, %s) i""", (tag, age, n))
    rows = db.query("SELECT DISTINCT pg_xact_commit_timestamp(xmin) FROM outbox.events "
                    "WHERE aggregate_id LIKE %s", (tag + "-%",))
    assert len(rows) == 1 and rows[0][0] is not None, rows
    return rows[0][0]


def purged_through(db):
    """outbox.purge_state's one value, or None when it has no row."""
    rows = db.query("SELECT purged_through FROM outbox.purge_state")
    assert len(rows) <= 1, rows
    return rows[0][0] if rows else None


def install_tracking_commit_times(db):
    install(db)
    assert one(db, "SHOW track_commit_timestamp") == "on"  # the harness's servers track them


def test_purge_records_the_newest_commit_time_of_the_rows_it_deleted(db):
    install_tracking_commit_times(db)
    # Committed last but created first: in created_at order these go in purge()'s first batch,
    # so the record must be the newest over all batches, not the last batch's.
    insert_old(db, "a", 3, age="2 hours")
    insert_old(db, "b", 4, age="2 hours 30 minutes")
    newest = insert_old(db, "c", 2, age="3 hours")
    young = insert_old(db, "young", 2, age="0")  # committed later still, but not old enough
    deleted = db.query("SELECT pg_xact_commit_timestamp(xmin) FROM outbox.events "
                       "WHERE created_at < now() - interval '1 hour'")
    assert len(deleted) == 9 and max(t for (t,) in deleted) == newest < young

    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SET enable_seqscan = off; SET enable_bitmapscan = off")  # created_at order
            cur.execute("SELECT outbox.purge('1 hour', 2)")
            assert cur.fetchone()[0] == 9
    finally:
        conn.close()
    assert purged_through(db) == newest
    assert sorted(r[0] for r in db.query("SELECT aggregate_id FROM outbox.events")) == ["young-1", "young-2"]
    assert one(db, "SELECT outbox.purge('0')") == 2
    assert purged_through(db) == young


def test_purged_through_never_moves_backwards(db):
    install_tracking_commit_times(db)
    older = insert_old(db, "older", 2, age="30 minutes")
    newer = insert_old(db, "newer", 2, age="2 hours")
    assert older < newer
    assert one(db, "SELECT outbox.purge('1 hour')") == 2  # the newer commits only
    assert purged_through(db) == newer
    assert one(db, "SELECT outbox.purge('10 minutes')") == 2  # then the older ones
    assert purged_through(db) == newer


def test_purge_records_nothing_when_nothing_was_deleted(db):
    install_tracking_commit_times(db)
    assert one(db, "SELECT outbox.purge()") == 0
    assert one(db, "SELECT outbox.purge('0')") == 0
    assert purged_through(db) is None

    committed = insert_old(db, "old")
    insert_old(db, "young", age="0")
    assert one(db, "SELECT outbox.purge()") == 1
    assert purged_through(db) == committed
    version = one(db, "SELECT xmin::text FROM outbox.purge_state")
    assert one(db, "SELECT outbox.purge()") == 0
    assert purged_through(db) == committed
    assert one(db, "SELECT xmin::text FROM outbox.purge_state") == version  # not even rewritten


@pytest.mark.parametrize("row_before", [False, True], ids=["no_row_before", "row_before"])
def test_concurrent_purges_record_the_newest_commit_time(db, row_before):
    """Two purges at once skip each other's rows; the later one to update outbox.purge_state
    waits there for the other's commit, and keeps the newer time (no lost update), whether
    purge_state had a row before (update) or not (insert)."""
    install_tracking_commit_times(db)
    if row_before:
        first = insert_old(db, "first")
        assert one(db, "SELECT outbox.purge('1 hour')") == 1 and purged_through(db) == first
    older = insert_old(db, "older", 3, age="30 minutes")
    newer = insert_old(db, "newer", 3, age="2 hours")
    assert older < newer

    holder = db.connect(autocommit=False)  # purges the newer rows, commits later
    waiter = db.connect()                  # purges the older ones meanwhile
    outcome = []
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT outbox.purge('1 hour')")
            assert cur.fetchone()[0] == 3
        waiter_pid = waiter.get_backend_pid()

        def purge_older():
            try:
                with waiter.cursor() as cur:
                    cur.execute("SELECT outbox.purge('10 minutes')")  # the newer rows: locked, skipped
                    outcome.append(cur.fetchone()[0])
            except Exception as e:  # reported by the assertion below
                outcome.append(e)

        thread = threading.Thread(target=purge_older)
        thread.start()
        try:
            wait_for(lambda: not thread.is_alive() or one(
                         db, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (waiter_pid,)) == "Lock",
                     timeout=30, what="the second purge waiting for the first one's commit")
            assert thread.is_alive() and not outcome, outcome  # waiting at outbox.purge_state
            holder.commit()
        finally:
            holder.rollback()  # releases the waiter if the test failed before the commit
            thread.join(30)
        assert not thread.is_alive() and outcome == [3], outcome
    finally:
        holder.close()
        waiter.close()
    assert one(db, "SELECT count(*) FROM outbox.events") == 0
    assert purged_through(db) == newer


def test_purge_without_commit_timestamps_deletes_and_records_nothing():
    """With track_commit_timestamp off, pg_xact_commit_timestamp() would raise an error: purge()
    does not call it, deletes as before and leaves outbox.purge_state empty (the relay refuses
    recovery on such a server anyway)."""
    import harness
    server = harness.Postgres(extra_settings={"track_commit_timestamp": "off"})
    try:
        server.start()
        db = server.create_database("t_purge_no_commit_ts")
        install(db)
        assert one(db, "SHOW track_commit_timestamp") == "off"
        db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                      SELECT 'user', 'u-' || i, 'E', '{}', now() - interval '2 hours' FROM generate_series(1, 5) i""")
        assert one(db, "SELECT outbox.purge('1 hour', 2)") == 5
        assert purged_through(db) is None
    finally:
        server.cleanup()


# ---------------------------------------------------------------------------------------------
# the relay's role
# ---------------------------------------------------------------------------------------------

def test_relay_role_twice_is_harmless_and_may_purge(db, pg, relay_role):
    install(db)
    relay_role()
    second = relay_role()
    assert "ERROR" not in second
    assert db.query("""SELECT rolcanlogin, rolreplication, rolsuper, rolinherit, rolconnlimit
                         FROM pg_roles WHERE rolname = 'outbox_relay'""") == [(True, True, False, False, 4)]
    assert one(db, "SELECT has_database_privilege('outbox_relay', current_database(), 'CONNECT')")
    for table in ("outbox.events", "outbox.purge_state"):  # read, never write
        assert one(db, "SELECT has_table_privilege('outbox_relay', %s, 'SELECT')", (table,))
        assert not one(db, "SELECT has_table_privilege('outbox_relay', %s, 'INSERT, UPDATE, DELETE, TRUNCATE')",
                       (table,))
    db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                  VALUES ('user', 'u-1', 'E', '{}', now() - interval '1 day')""")
    conn = pg.connect(dbname=db.name, user="outbox_relay")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.purge('1 hour')")
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()


def test_relay_role_can_read_outbox_events_and_purge_state(db, pg, relay_role):
    """What the relay reads for its backfill (first start, a lost slot): the rows with their
    commit times, and what purge() deleted. Run before the kit, the file grants what exists and
    says what it skipped; run again after installing or upgrading, it grants the rest."""
    out = relay_role()
    assert "outbox.events is not installed here" in out
    psql_file(db, OUTBOX_SQL_1_1)
    out = relay_role()
    assert "outbox.purge_state is not installed here" in out
    assert one(db, "SELECT has_table_privilege('outbox_relay', 'outbox.events', 'SELECT')")
    install_tracking_commit_times(db)
    assert "not installed here" not in relay_role()

    kept = insert_old(db, "kept", 2, age="0")
    purged = insert_old(db, "purged", 1)
    assert one(db, "SELECT outbox.purge('1 hour')") == 1
    conn = pg.connect(dbname=db.name, user="outbox_relay")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT aggregate_id, pg_xact_commit_timestamp(xmin) FROM outbox.events ORDER BY 1")
            assert cur.fetchall() == [("kept-1", kept), ("kept-2", kept)]
            cur.execute("SELECT purged_through FROM outbox.purge_state")
            assert cur.fetchall() == [(purged,)]
            # as the relay reads it (relay/backfill.c): microseconds since the epoch
            cur.execute("SELECT (extract(epoch FROM max(purged_through)) * 1000000)::int8 FROM outbox.purge_state")
            assert cur.fetchone()[0] == one(db, "SELECT (extract(epoch FROM %s::timestamptz) * 1000000)::int8",
                                            (purged,))
        for sql in ("UPDATE outbox.purge_state SET purged_through = now()",
                    "DELETE FROM outbox.purge_state",
                    "DELETE FROM outbox.events"):
            with pytest.raises(Exception, match="permission denied"):
                with conn.cursor() as cur:
                    cur.execute(sql)
    finally:
        conn.close()
    assert purged_through(db) == purged


def test_seq_numbers_the_rows_of_a_transaction_in_write_order(db, role):
    """seq is drawn at insert time, so a transaction's rows read back in the order they were
    written even where cmin says nothing (a standby or crash recovery replays rows with cmin 0);
    a role with only EXECUTE on publish() and INSERT on the table can draw it."""
    psql_file(db, OUTBOX_SQL)
    name = role("t_pub")
    db.execute('GRANT USAGE ON SCHEMA outbox TO "%s"' % name)
    db.execute('GRANT INSERT ON outbox.events TO "%s"' % name)
    db.execute('GRANT EXECUTE ON FUNCTION %s TO "%s"' % (PUBLISH, name))
    conn = db.pg.connect(autocommit=False, dbname=db.name, user=name)
    cur = conn.cursor()
    ids = []
    for i in range(5):
        cur.execute("SELECT outbox.publish('user', 'u1', 'Changed', %s::jsonb)", (json.dumps({"i": i}),))
        ids.append(str(cur.fetchone()[0]))
    conn.commit()
    conn.close()
    rows = db.query("SELECT id::text FROM outbox.events ORDER BY seq")
    assert [r[0] for r in rows] == ids


def test_txid_is_the_top_level_transaction_also_under_a_savepoint(db):
    """A row written under a savepoint has the savepoint's xid as xmin; txid stays the top-level
    transaction's, the xid the stream names."""
    psql_file(db, OUTBOX_SQL)
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT outbox.publish('user', 'u1', 'Top', '{}'::jsonb)")
    cur.execute("SAVEPOINT s")
    cur.execute("SELECT outbox.publish('user', 'u1', 'Nested', '{}'::jsonb)")
    cur.execute("RELEASE SAVEPOINT s")
    cur.execute("SELECT pg_current_xact_id()::text")
    top = cur.fetchone()[0]
    conn.commit()
    conn.close()
    rows = dict(db.query("SELECT event_type, txid::text FROM outbox.events"))
    assert rows == {"Top": top, "Nested": top}
    xmins = dict(db.query("SELECT event_type, xmin::text FROM outbox.events"))
    assert xmins["Nested"] != xmins["Top"]
