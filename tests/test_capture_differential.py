# test_capture_differential.py: every captured change the relay publishes equals what wal2json printed for it on a reference slot.
"""The differential test of issue 17 (tests/differential.py does the comparison).

A reference wal2json slot, made with the relay's options, sits beside the relay's. A stream of DDL
and DML (types, unusual names, TOAST values, replica identities, key changes, truncates, schema
changes while the relay is stopped behind them) runs; then every I/U/D/T change of a captured
table on the reference slot must be in Kafka exactly as derived from wal2json's record, or in the
dead-letter topic with a reason, and nothing else may be there. DIFF_ROUNDS=N (DIFF_SEED) adds N
rounds of generated tables, names, types and values (opt-in: long).
"""
import os
import random
import signal
import uuid

import differential
from harness import wait_for

BIG = "".join("%08x" % (i * 2654435761 % 4294967296) for i in range(1000))  # 8 kB, incompressible


class Stream:
    """Runs statements on one connection; after DDL, records the table in the model."""

    def __init__(self, db):
        self.conn = db.connect()
        self.model = differential.Model()

    def run(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)

    def one(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def ddl(self, sql, schema, table, params=None):
        """A DDL statement (its own transaction), then the table's columns and key as of now."""
        self.run(sql, params)
        self.note(schema, table)

    def note(self, schema, table, lsn=None):
        oid = self.one("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        if oid is None:
            return
        cols = [r for r, in self.all("SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                                     "AND NOT attisdropped ORDER BY attnum", (oid[0],))]

        def index(flag):
            return [r for r, in self.all(
                "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(att, n) "
                "JOIN pg_attribute a ON a.attnum = k.att WHERE i.indrelid = %%s AND i.%s "
                "AND a.attrelid = i.indrelid ORDER BY k.n" % flag, (oid[0],))]
        pk, ri = index("indisprimary"), index("indisreplident")
        ident = self.one("SELECT relreplident FROM pg_class WHERE oid = %s", (oid[0],))[0]
        keys = ri if ident == "i" and not set(pk) <= set(ri) else (pk or ri)
        at = lsn if lsn is not None else differential.lsn_int(self.one("SELECT pg_current_wal_lsn()::text")[0])
        self.model.record(schema, table, at, cols, keys)

    def all(self, sql, params=None):
        with self.conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()


TABLES = [
    ("diff", "typed", """(id bigint PRIMARY KEY, n numeric, f8 float8, r real, bo boolean, by bytea,
        j json, jb jsonb, tarr text[], iarr int[], ts timestamptz, tsn timestamp, d date, ch char(5),
        vc varchar(10), u uuid, tx text, iv interval, "Col With Space" text, "ключ" int, "q""uote" text,
        dj public.doc, dp public.posint)"""),
    ("diff", "Mixed Case", "(id int PRIMARY KEY, v text)"),
    ("diff", "ünï ❄", "(k text PRIMARY KEY, v int)"),
    ("diff", "new\nline", "(id int PRIMARY KEY, v text)"),
    ("diff", "docs", "(id int PRIMARY KEY, title text, body text)"),
    ("diff", "keybody", "(id int PRIMARY KEY, body text)"),
    ("diff", "docs_full", "(id int PRIMARY KEY, title text, body text)"),
    ("diff", "docs_late", "(id int PRIMARY KEY, title text, body text)"),
    ("diff", "people", "(id int PRIMARY KEY, email text NOT NULL UNIQUE, name text)"),
    ("diff", "composite", "(a int, b text, c text, PRIMARY KEY (a, b))"),
    ("diff", "trunc", "(id int PRIMARY KEY)"),
    ("diff", "dropper", "(id int PRIMARY KEY, keep text, gone text)"),
    ("odd", "plain", "(id int PRIMARY KEY)"),
    ("odd", "we ird", "(id int PRIMARY KEY)"),  # no valid topic name: refused, dead-lettered
    ("diff", "bare", "(a int, b text)"),  # no replica identity: refused, dead-lettered
]


def q(schema, table):
    return '"%s"."%s"' % (schema.replace('"', '""'), table.replace('"', '""'))


def create_tables(s):
    s.run("CREATE DOMAIN public.doc AS jsonb")
    s.run("CREATE DOMAIN public.posint AS int CHECK (VALUE > 0)")
    s.run("CREATE SCHEMA diff")
    s.run("CREATE SCHEMA odd")
    for schema, table, cols in TABLES:
        s.run("CREATE TABLE %s %s" % (q(schema, table), cols))
    for t in ("docs", "docs_full", "docs_late", "keybody"):
        s.run("ALTER TABLE diff.%s ALTER COLUMN body SET STORAGE EXTERNAL" % t)
    s.run("ALTER TABLE diff.docs_full REPLICA IDENTITY FULL")
    s.run("ALTER TABLE diff.people REPLICA IDENTITY USING INDEX people_email_key")
    for schema, table, _ in TABLES:
        s.note(schema, table, lsn=0)


TYPED_ROWS = [
    (1, "12345678901234567890.123456789", 0.1, 1.5, True, b"\x00\xff\x10", '{"k" : "v\\u0001", "e": "\\u00e9"}',
     '{"a": [1, 2.50, "x"], "n": null}', ["a", "b c", 'q"', None], [1, None, 3], "2026-11-22 10:00:00.123456+00",
     "2026-11-22 10:00:00", "2026-11-22", "ab", "tab\there", "00000000-0000-0000-0000-000000000001",
     "line\nbreak \\ \"quoted\" \u2028 \U0001F600 \x01", "1 day 02:03:04", "space", 7, "quo\"te",
     '{"doc": [1, "x"]}', 5),
    (2, "NaN", float("inf"), float("-inf"), False, b"", "null", "[]", [], [], "infinity", "-infinity",
     "2000-01-01", "abcde", "", "ffffffff-ffff-ffff-ffff-ffffffffffff", "", "-1 mons", None, None, None,
     "null", 1),
    (9223372036854775807, "-0.000000000000000000001", 1e308, 3.4e38, None, None, None, None, None, None,
     None, None, None, None, None, None, None, None, None, None, None, None, None),
]


def phase_steady(s):
    """The relay keeps up: types, names, TOAST, identities, key changes, COPY, truncate."""
    cols = "(%s)" % ", ".join(["%s"] * 23)
    for r in TYPED_ROWS:
        s.run("INSERT INTO diff.typed VALUES " + cols, r)
    s.run("UPDATE diff.typed SET tx = 'changed', jb = '{\"b\": 1e400}' WHERE id = 1")
    s.run("UPDATE diff.typed SET id = 3 WHERE id = 2")  # a key change
    with s.conn.cursor() as cur:  # three rows in one multi-insert record: one LSN
        import io
        cur.copy_expert("COPY diff.typed (id, tx) FROM STDIN", io.StringIO("10\ta\n11\tb\n12\t\\N\n"))
    s.run("DELETE FROM diff.typed WHERE id IN (3, 11)")
    for t in ("Mixed Case", "ünï ❄", "new\nline"):
        key = "'k1'" if t == "ünï ❄" else "1"
        s.run("INSERT INTO %s VALUES (%s, %s)" % (q("diff", t), key, "1" if t == "ünï ❄" else "'x'"))
        s.run("UPDATE %s SET %s = %s" % (q("diff", t), '"v"', "2" if t == "ünï ❄" else "'y'"))
        s.run("DELETE FROM %s" % q("diff", t))
    for t in ("docs", "docs_full", "docs_late"):
        s.run("INSERT INTO diff.%s VALUES (1, 'one', %%s)" % t, (BIG,))
        s.run("UPDATE diff.%s SET title = 'two' WHERE id = 1" % t)  # body: unchanged TOAST
        s.run("UPDATE diff.%s SET body = %%s WHERE id = 1" % t, (BIG[::-1],))
        s.run("UPDATE diff.%s SET id = 2 WHERE id = 1" % t)  # key change, body unchanged
    # Only the key changes, the rest is unchanged TOAST: the identity is the old key, not the row.
    s.run("INSERT INTO diff.keybody VALUES (1, %s)", (BIG,))
    s.run("UPDATE diff.keybody SET id = 2 WHERE id = 1")
    s.run("UPDATE diff.keybody SET id = id WHERE id = 2")
    s.run("INSERT INTO diff.people VALUES (1, 'a@x', 'A'), (2, 'b@x', 'B')")
    s.run("UPDATE diff.people SET name = 'AA' WHERE id = 1")
    s.run("UPDATE diff.people SET email = 'a2@x' WHERE id = 1")  # the key (identity index) changes
    s.run("DELETE FROM diff.people WHERE id = 2")
    s.run("INSERT INTO diff.composite VALUES (1, 'x', 'c'), (1, 'y', 'c')")
    s.run("UPDATE diff.composite SET c = 'd' WHERE b = 'x'")
    s.run("UPDATE diff.composite SET b = 'z' WHERE b = 'y'")
    s.run("DELETE FROM diff.composite WHERE a = 1")
    s.run("INSERT INTO diff.trunc SELECT generate_series(1, 3)")
    s.run("TRUNCATE diff.trunc")
    s.run("INSERT INTO odd.plain VALUES (1)")
    s.run('INSERT INTO odd."we ird" VALUES (1)')
    s.run("INSERT INTO diff.bare VALUES (1, 'x')")
    s.run("UPDATE diff.bare SET b = 'y'")  # wal2json drops it (no identity): in neither
    s.caught_up()
    # Schema changes the relay follows while it keeps up.
    s.ddl("ALTER TABLE diff.docs_late REPLICA IDENTITY FULL", "diff", "docs_late")
    s.run("UPDATE diff.docs_late SET title = 'full now' WHERE id = 2")
    s.run("DELETE FROM diff.docs_late WHERE id = 2")
    s.run("INSERT INTO diff.dropper VALUES (1, 'k', 'g')")
    s.ddl("ALTER TABLE diff.dropper DROP COLUMN gone", "diff", "dropper")
    s.run("UPDATE diff.dropper SET keep = 'k2' WHERE id = 1")
    s.caught_up()
    s.ddl("CREATE TABLE diff.nokey (a int, b text)", "diff", "nokey")  # no replica identity
    s.run("INSERT INTO diff.nokey VALUES (1, 'x')")


def phase_behind(s, relay):
    """The relay is stopped (SIGSTOP) while tables are created, altered, dropped and re-created."""
    relay.proc.send_signal(signal.SIGSTOP)
    try:
        s.ddl("CREATE TABLE diff.fresh (id int PRIMARY KEY, body text)", "diff", "fresh")
        s.ddl("ALTER TABLE diff.fresh ALTER COLUMN body SET STORAGE EXTERNAL", "diff", "fresh")
        s.run("INSERT INTO diff.fresh VALUES (1, %s)", (BIG,))
        s.run("UPDATE diff.fresh SET id = id WHERE id = 1")  # body unchanged TOAST
        s.ddl("ALTER TABLE diff.fresh ADD COLUMN c int", "diff", "fresh")
        s.run("UPDATE diff.fresh SET c = 1 WHERE id = 1")
        s.ddl("CREATE TABLE diff.reborn (id int PRIMARY KEY, body text)", "diff", "reborn")
        s.ddl("ALTER TABLE diff.reborn ALTER COLUMN body SET STORAGE EXTERNAL", "diff", "reborn")
        s.run("INSERT INTO diff.reborn VALUES (1, %s)", (BIG,))
        s.run("UPDATE diff.reborn SET id = id WHERE id = 1")
        s.run("DROP TABLE diff.reborn")
        s.ddl("CREATE TABLE diff.reborn (id int PRIMARY KEY, x text)", "diff", "reborn")
        s.run("INSERT INTO diff.reborn VALUES (1, 'new')")
        s.ddl("ALTER TABLE diff.docs ADD COLUMN extra text", "diff", "docs")
        s.run("INSERT INTO diff.docs VALUES (5, 't', %s, 'e')", (BIG,))
        s.run("UPDATE diff.docs SET title = 'behind' WHERE id = 5")
        s.ddl("ALTER TABLE diff.typed ADD COLUMN late_col int", "diff", "typed")
        s.run("INSERT INTO diff.typed (id, late_col) VALUES (100, 1)")
        s.run("UPDATE diff.people SET name = 'behind' WHERE id = 1")
    finally:
        relay.proc.send_signal(signal.SIGCONT)


def phase_restart(s, relay):
    """The relay is stopped while tables are altered and written; it reads every catalog entry
    again at its start, after all of it."""
    assert relay.stop() == 0
    s.ddl("ALTER TABLE diff.composite ADD COLUMN big text", "diff", "composite")
    s.ddl("ALTER TABLE diff.composite ALTER COLUMN big SET STORAGE EXTERNAL", "diff", "composite")
    s.run("INSERT INTO diff.composite VALUES (7, 'r', 'c', %s)", (BIG,))
    s.run("UPDATE diff.composite SET c = 'restart' WHERE a = 7")  # big: unchanged TOAST
    s.ddl("ALTER TABLE diff.docs_full REPLICA IDENTITY DEFAULT", "diff", "docs_full")
    s.run("UPDATE diff.docs_full SET title = 'default again' WHERE id = 2")
    s.run("UPDATE diff.typed SET iarr = '{7}' WHERE id = 1")
    relay.start()
    relay.wait_streaming()


def config(prefix):
    return ('{ tables = "diff.*"; topic = "${prefix}.diff"; snapshot = false; }, '
            '{ tables = "odd.*"; snapshot = false; }'), 'dead_letter_topic = "%s.dlq";' % prefix


def run_and_compare(outbox, kafka, s, body):
    """Starts the relay and a reference slot, runs body(s, relay), waits for the relay to pass a
    final marker, and compares; returns the Comparison."""
    prefix = outbox.prefix
    capture, extra = config(prefix)
    outbox.reconfigure(capture=capture, extra_relay='topic_prefix = "%s"; %s' % (prefix, extra))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    markers = iter(range(-1000, 0))

    def caught_up():
        """Waits until the relay has published a marker row written now."""
        n = next(markers)
        s.run("INSERT INTO odd.plain VALUES (%s)", (n,))
        key = b'{"id":%d}' % n
        wait_for(lambda: any(m["key"] == key for m in kafka.consume(prefix + ".odd.plain", timeout=5)),
                 120, what="the relay to reach marker %d" % n)
    s.caught_up = caught_up
    ref = "ref_" + uuid.uuid4().hex[:10]
    s.run("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (ref,))
    try:
        body(s, outbox.relay)
        caught_up()  # the end of the stream
        opts = differential.RELAY_OPTIONS + ["add-tables", "outbox.events,diff.*,odd.*"]
        changes = [d for d, in s.all("SELECT data FROM pg_logical_slot_get_changes(%%s, NULL, NULL, %s)"
                                     % ", ".join(["%s"] * len(opts)), [ref] + opts)]
    finally:
        s.run("SELECT pg_drop_replication_slot(%s)", (ref,))
    topics = [t for t in kafka.admin().list_topics(timeout=10).topics
              if t.startswith(prefix + ".") and t != prefix + ".dlq"]
    published = [m for m in kafka.consume(topics, timeout=60)] if topics else []
    dead = kafka.consume(prefix + ".dlq", timeout=30)

    def captured(schema, table):
        if schema == "diff":
            return prefix + ".diff"
        return "%s.odd.%s" % (prefix, table) if schema == "odd" else None

    res = differential.compare(changes, published, dead, lambda t: len(kafka.topic_partitions(t)),
                               s.model, captured)
    print("differential: " + res.summary())
    return res


def test_every_captured_change_is_published_as_wal2json_printed_it_or_dead_lettered(outbox, kafka):
    s = Stream(outbox.db)
    create_tables(s)

    def body(st, relay):
        phase_steady(st)
        phase_behind(st, relay)
        phase_restart(st, relay)

    res = run_and_compare(outbox, kafka, s, body)
    assert not res.problems, res.summary() + "\n" + "\n".join(res.problems[:20])
    assert res.compared > 60 and res.matched > 50, res.summary()
    # Only the tables that cannot be captured are dead-lettered (no key, no replica identity, a
    # name that is no valid topic name): any other dead letter would hide a change.
    assert set(res.dead_tables) == {"bare", "nokey", "we ird"}, res.summary()
    # Where the relay read the catalog before the change, it knows: only the tables altered or
    # re-created behind it (and after the update) get "unchanged_toast": null.
    assert set(res.unknown_tables) <= {"fresh", "reborn"}, res.summary()
    assert outbox.relay.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# The long randomized run (opt-in): DIFF_ROUNDS=200 DIFF_SEED=1 pytest -k randomized -s
# ---------------------------------------------------------------------------------------------

TYPES = [
    ("int", lambda r: r.choice([0, -1, 2 ** 31 - 1, r.randint(-10 ** 6, 10 ** 6)])),
    ("bigint", lambda r: r.choice([-2 ** 63, 2 ** 63 - 1, r.randint(-10 ** 12, 10 ** 12)])),
    ("numeric", lambda r: r.choice(["NaN", "0.000000000000000000000001", "%d.%d" % (r.randint(0, 10 ** 20), r.randint(0, 999))])),
    ("float8", lambda r: r.choice([0.1, -0.0, 1e-300, float("inf"), float("nan"), r.random()])),
    ("boolean", lambda r: r.choice([True, False])),
    ("bytea", lambda r: bytes(r.randrange(256) for _ in range(r.randint(0, 40)))),
    ("text", lambda r: _text(r)),
    ("char(3)", lambda r: _text(r, 3).replace("\x00", "")),
    ("json", lambda r: r.choice(['{"a" : 1}', '[1, "\\u00e9", null]', '"s"', "null", '{"deep": {"x": [1.0e5]}}'])),
    ("jsonb", lambda r: r.choice(['{"a" : 1}', '[1, "\\u00e9", null]', '"s"', "null", '{"n": 12345678901234567890}'])),
    ("text[]", lambda r: [_text(r, 5) for _ in range(r.randint(0, 3))]),
    ("timestamptz", lambda r: r.choice(["2026-01-01 00:00:00+00", "infinity", "1999-12-31 23:59:59.999999+05:30"])),
    ("date", lambda r: r.choice(["2026-01-01", "-infinity", "0001-01-01 BC"])),
    ("uuid", lambda r: str(uuid.UUID(int=r.getrandbits(128)))),
]


def _text(r, n=None):
    alphabet = "ab \"\\\n\t\x01\u00e9\u2028\U0001F600'"
    if n is None and r.random() < 0.05:
        return "".join(r.choice("0123456789abcdef") for _ in range(5000))  # TOASTed
    return "".join(r.choice(alphabet) for _ in range(n if n is not None else r.randint(0, 12)))


def _name(r):
    return "".join(r.choice("abcXYZ _\"ä€.") for _ in range(r.randint(1, 12)))


def random_round(s, r, tables, relay):
    """One random step: a table created or altered, or rows inserted, updated, deleted."""
    op = r.random()
    if op < 0.1 or not tables:
        name = _name(r)
        if any(t == name for t, _ in tables):
            return
        cols = [("id", "bigint")] + [(("c%d_" % i) + _name(r), r.choice(TYPES)[0]) for i in range(r.randint(1, 6))]
        ddl = "(%s, PRIMARY KEY (id))" % ", ".join('"%s" %s' % (c.replace('"', '""'), t) for c, t in cols)
        s.ddl("CREATE TABLE %s %s" % (q("diff", name), ddl), "diff", name)
        if r.random() < 0.3:
            s.ddl("ALTER TABLE %s REPLICA IDENTITY FULL" % q("diff", name), "diff", name)
        tables.append((name, cols))
        return
    name, cols = r.choice(tables)
    qt = q("diff", name)
    if op < 0.15:
        c = "a_" + _name(r)
        if c in [x for x, _ in cols]:
            return
        t = r.choice(TYPES)[0]
        s.ddl('ALTER TABLE %s ADD COLUMN "%s" %s' % (qt, c.replace('"', '""'), t), "diff", name)
        cols.append((c, t))
    elif op < 0.18 and len(cols) > 2:
        c = r.choice(cols[1:])
        s.ddl('ALTER TABLE %s DROP COLUMN "%s"' % (qt, c[0].replace('"', '""')), "diff", name)
        cols.remove(c)
    elif op < 0.2:
        s.ddl("ALTER TABLE %s REPLICA IDENTITY %s" % (qt, r.choice(["FULL", "DEFAULT"])), "diff", name)
    elif op < 0.6:
        gen = dict(TYPES)
        vals = [r.randint(1, 50)] + [gen[t](r) for _, t in cols[1:]]
        s.run("INSERT INTO %s VALUES (%s) ON CONFLICT DO NOTHING" % (qt, ", ".join(["%s"] * len(vals))), vals)
    elif op < 0.85 and len(cols) > 1:
        gen = dict(TYPES)
        c, t = r.choice(cols[1:])
        s.run('UPDATE %s SET "%s" = %%s WHERE id %%%% 3 = %%s' % (qt, c.replace('"', '""')), (gen[t](r), r.randint(0, 2)))
    elif op < 0.9:
        s.run("UPDATE %s SET id = id + 100 WHERE id = %%s" % qt, (r.randint(1, 50),))
    elif op < 0.97:
        s.run("DELETE FROM %s WHERE id = %%s" % qt, (r.randint(1, 150),))
    else:  # a new relfilenode: the table's pg_class row changes, like an ALTER TABLE's
        s.ddl("TRUNCATE %s" % qt, "diff", name)


def test_randomized_generated_tables_names_and_values_match_wal2json(outbox, kafka):
    """Opt-in (DIFF_ROUNDS): generated tables, names, types and values, with the relay stopped
    behind some of the schema changes."""
    import pytest
    rounds = int(os.environ.get("DIFF_ROUNDS", "0"))
    if rounds <= 0:
        pytest.skip("set DIFF_ROUNDS to run the randomized differential test")
    seed = int(os.environ.get("DIFF_SEED", str(random.randrange(10 ** 6))))
    print("DIFF_SEED=%d" % seed)
    r = random.Random(seed)
    s = Stream(outbox.db)
    create_tables(s)

    def body(st, relay):
        tables = []
        for i in range(rounds):
            behind = r.random() < 0.05
            if behind:
                relay.proc.send_signal(signal.SIGSTOP)
            try:
                for _ in range(r.randint(1, 20) if behind else 1):
                    random_round(st, r, tables, relay)
            finally:
                if behind:
                    relay.proc.send_signal(signal.SIGCONT)

    res = run_and_compare(outbox, kafka, s, body)
    assert not res.problems, "DIFF_SEED=%d " % seed + res.summary() + "\n" + "\n".join(res.problems[:20])
    assert res.dead_lettered == 0, "DIFF_SEED=%d: generated tables can all be captured: %s" % (
        seed, res.summary())
