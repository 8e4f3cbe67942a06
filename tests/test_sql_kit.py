# test_sql_kit.py: the SQL kit (sql/outbox.sql 1.1, sql/relay-role.sql) run with psql as a user would.
"""Install, re-run and upgrade of the kit; outbox.publish() and outbox.emit() as seen through a
wal2json slot (rollback, message envelope v1); the trigger helper; retention with purge().

Needs only PostgreSQL (the `db` fixture), no Kafka and no relay binary.
"""
import json
import os
import subprocess
import uuid

import pytest

from harness import REPO_ROOT

OUTBOX_SQL = os.path.join(REPO_ROOT, "sql", "outbox.sql")
RELAY_ROLE_SQL = os.path.join(REPO_ROOT, "sql", "relay-role.sql")
OUTBOX_SQL_1_0 = os.path.join(REPO_ROOT, "tests", "data", "outbox-1.0.sql")
KIT_VERSION = "1.1"


def psql_file(db, path, check=True):
    """Runs one SQL file with psql -X -v ON_ERROR_STOP=1; returns the CompletedProcess."""
    proc = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-d", db.dsn, "-f", path],
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
    """Functions, tables, indexes and triggers of schema outbox, with their definitions and ACLs."""
    return db.query("""
        SELECT 'f', p.oid::regprocedure::text, pg_get_functiondef(p.oid), coalesce(p.proacl::text, '')
          FROM pg_proc p WHERE p.pronamespace = 'outbox'::regnamespace
        UNION ALL
        SELECT 'r', c.oid::regclass::text, c.relkind::text, coalesce(c.relacl::text, '')
          FROM pg_class c WHERE c.relnamespace = 'outbox'::regnamespace
        UNION ALL
        SELECT 'c', conname, pg_get_constraintdef(oid), ''
          FROM pg_constraint WHERE conrelid = 'outbox.events'::regclass
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
               'GRANT EXECUTE ON FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text) TO "%s"'
               % (app, app))
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


def test_publisher_needs_only_insert(db, role):
    """The grants of docs/sql.md are enough for publish() and emit(): no SELECT on outbox.events."""
    install(db)
    app = role("t_app")
    db.execute(("GRANT USAGE ON SCHEMA outbox TO {r}; GRANT INSERT ON outbox.events TO {r}; "
                "GRANT EXECUTE ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb) TO {r}; "
                "GRANT EXECUTE ON FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text) TO {r}")
               .format(r='"%s"' % app))
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
    assert "upgrading 1.0 to 1.1" in out
    assert one(db, "SELECT outbox.kit_version()") == KIT_VERSION
    assert events_columns(db) == EVENTS_COLUMNS
    assert one(db, "SELECT payload::text || headers::text FROM outbox.events WHERE id = %s",
               (old_id,)) == '{"v": 1}{"h": "x"}'
    # The role that could publish with 1.0 still can; PUBLIC cannot any more.
    assert one(db, "SELECT has_function_privilege(%s, 'outbox.publish(text,text,text,jsonb,jsonb)', 'EXECUTE')",
               (app,))
    assert not one(db, "SELECT has_function_privilege('public', 'outbox.publish(text,text,text,jsonb,jsonb)', 'EXECUTE')")
    conn = db.pg.connect(dbname=db.name, user=app)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-2', 'Created', '{}')")
    finally:
        conn.close()
    # The new parts are there, and the headers CHECK still holds.
    assert one(db, "SELECT to_regclass('outbox.events_created_at_idx') IS NOT NULL")
    assert one(db, "SELECT outbox.purge('1 day')") == 0
    with pytest.raises(Exception, match="events_headers_check"):
        db.execute("SELECT outbox.publish('user', 'u-1', 'X', '{}', '[1]')")
    # And a second 1.1 run changes nothing.
    before = kit_objects(db)
    install(db)
    assert kit_objects(db) == before


def test_upgrade_keeps_public_publish_when_public_could_insert(db):
    psql_file(db, OUTBOX_SQL_1_0)
    db.execute("GRANT INSERT ON outbox.events TO PUBLIC")
    install(db)
    assert one(db, "SELECT has_function_privilege('public', 'outbox.publish(text,text,text,jsonb,jsonb)', 'EXECUTE')")


def test_newer_kit_is_not_downgraded(db):
    install(db)
    db.execute("CREATE OR REPLACE FUNCTION outbox.kit_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.10' $$")
    db.execute("DROP FUNCTION outbox.emit(text, text, text, jsonb, jsonb, text)")
    proc = psql_file(db, OUTBOX_SQL, check=False)
    assert proc.returncode != 0
    assert "outbox kit 1.10 is installed, this file is the older 1.1" in proc.stdout
    assert one(db, "SELECT to_regprocedure('outbox.emit(text,text,text,jsonb,jsonb,text)') IS NULL")


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
                "GRANT EXECUTE ON FUNCTION outbox.publish(text, text, text, jsonb, jsonb) TO {r}")
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


def test_relay_role_twice_is_harmless_and_may_purge(db, pg):
    existed = one(db, "SELECT count(*) FROM pg_roles WHERE rolname = 'outbox_relay'") == 1
    try:
        install(db)
        psql_file(db, RELAY_ROLE_SQL)
        second = psql_file(db, RELAY_ROLE_SQL)
        assert "ERROR" not in second.stdout
        assert db.query("""SELECT rolcanlogin, rolreplication, rolsuper, rolinherit, rolconnlimit
                             FROM pg_roles WHERE rolname = 'outbox_relay'""") == [(True, True, False, False, 4)]
        assert one(db, "SELECT has_database_privilege('outbox_relay', current_database(), 'CONNECT')")
        assert not one(db, "SELECT has_table_privilege('outbox_relay', 'outbox.events', 'SELECT, DELETE')")
        db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, created_at)
                      VALUES ('user', 'u-1', 'E', '{}', now() - interval '1 day')""")
        conn = pg.connect(dbname=db.name, user="outbox_relay")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT outbox.purge('1 hour')")
                assert cur.fetchone()[0] == 1
        finally:
            conn.close()
    finally:
        if not existed:
            db.execute("DROP OWNED BY outbox_relay")
            pg.execute("DROP ROLE outbox_relay")
