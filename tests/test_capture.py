# test_capture.py: change capture of existing tables: envelopes, keys, TOAST, types, truncate, refusals.
import json
import signal

import pytest

import relayctl
from harness import wait_for


def start(outbox, capture, extra_relay=""):
    """Rewrites the config with a capture list and starts the relay; returns the topic prefix."""
    outbox.reconfigure(capture=capture, extra_relay='topic_prefix = "%s"; %s' % (outbox.prefix, extra_relay))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    return outbox.prefix


def records(kafka, topic, n, timeout=60):
    msgs = kafka.consume(topic, until=n, timeout=timeout)
    assert len(msgs) >= n, "got %d of %d records on %s" % (len(msgs), n, topic)
    return [(json.loads(m["key"]) if m["key"] else None, json.loads(m["value"]) if m["value"] else None)
            for m in msgs]


def test_insert_update_delete_with_default_identity(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.users (id bigint PRIMARY KEY, email text, password_hash text, score numeric)")
    db.execute("INSERT INTO public.users VALUES (1, 'before@x', 'secret', 1.5)")
    prefix = start(outbox, '{ tables = "public.users"; exclude_columns = ["password_hash"]; snapshot = false; }')
    db.execute("INSERT INTO public.users VALUES (2, 'a@x', 'secret', 12345678901234567890.123456789)")
    db.execute("UPDATE public.users SET email = 'b@x' WHERE id = 2")
    db.execute("DELETE FROM public.users WHERE id = 2")
    got = records(kafka, prefix + ".public.users", 4)
    (k1, c), (k2, u), (k3, d), (k4, tomb) = got[:4]
    assert k1 == k2 == k3 == k4 == {"id": 2}
    assert c["op"] == "c" and c["before"] is None
    assert c["after"]["id"] == 2 and c["after"]["email"] == "a@x"
    assert "password_hash" not in c["after"]
    assert c["source"]["schema"] == "public" and c["source"]["table"] == "users"
    assert c["source"]["snapshot"] is False and c["source"]["xid"] > 0 and "/" in c["source"]["lsn"]
    assert u["op"] == "u" and u["after"]["email"] == "b@x" and u["before"] is None
    assert d["op"] == "d" and d["after"] is None and d["before"] == {"id": 2}
    assert tomb is None


def test_numbers_byte_exact(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.amounts (id int PRIMARY KEY, n numeric, b bigint, f float8, nan numeric)")
    prefix = start(outbox, '{ tables = "public.amounts"; snapshot = false; }')
    db.execute("INSERT INTO public.amounts VALUES (1, 12345678901234567890.123456789, 9223372036854775807, 0.1, 'NaN')")
    msgs = kafka.consume(prefix + ".public.amounts", until=1, timeout=60)
    raw = msgs[0]["value"].decode()
    assert '"n":12345678901234567890.123456789' in raw
    assert '"b":9223372036854775807' in raw
    assert '"nan":null' in raw


def test_full_identity_before_and_toast(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text)")
    db.execute("CREATE TABLE public.docs_full (id int PRIMARY KEY, title text, body text)")
    db.execute("ALTER TABLE public.docs_full REPLICA IDENTITY FULL")
    # Not compressible: stored out of line (TOASTed) as it is over 2 kB.
    big = "".join("%08x" % (i * 2654435761 % 4294967296) for i in range(1000))
    for t in ("docs", "docs_full"):
        db.execute("ALTER TABLE public.%s ALTER COLUMN body SET STORAGE EXTERNAL" % t)
    prefix = start(outbox, '{ tables = "public.docs"; snapshot = false; }, { tables = "public.docs_full"; snapshot = false; }')
    for t in ("docs", "docs_full"):
        db.execute("INSERT INTO public.%s VALUES (1, 'one', %%s)" % t, (big,))
        db.execute("UPDATE public.%s SET title = 'two' WHERE id = 1" % t)
    plain = records(kafka, prefix + ".public.docs", 2)
    full = records(kafka, prefix + ".public.docs_full", 2)
    u = plain[1][1]
    assert u["op"] == "u" and u["after"]["title"] == "two"
    assert "body" not in u["after"] and u["unchanged_toast"] == ["body"]
    uf = full[1][1]
    assert uf["after"]["body"] == big and "unchanged_toast" not in uf
    assert uf["before"] == {"id": 1, "title": "one", "body": big}


def test_types(outbox, kafka):
    db = outbox.db
    db.execute("""CREATE TABLE public.typed (id uuid PRIMARY KEY, j jsonb, js json, raw bytea, tags text[],
                  ts timestamptz, flag boolean, small smallint, o oid, d date)""")
    prefix = start(outbox, '{ tables = "public.typed"; snapshot = false; }')
    db.execute("""INSERT INTO public.typed VALUES ('00000000-0000-0000-0000-000000000001',
                  '{"a": [1, 2.50, "x"]}', '{"k" : "v"}', '\\x00ff10', '{a,"b c"}',
                  '2026-11-22 10:00:00.123456+00', true, -3, 42, '2026-11-22')""")
    (key, v), = records(kafka, prefix + ".public.typed", 1)
    a = v["after"]
    assert key == {"id": "00000000-0000-0000-0000-000000000001"}
    assert a["j"] == {"a": [1, 2.50, "x"]} and a["js"] == {"k": "v"}
    assert a["raw"] == "00ff10"
    assert a["tags"] == '{a,"b c"}'
    assert a["ts"].startswith("2026-11-22 10:00:00.123456")
    assert a["flag"] is True and a["small"] == -3 and a["o"] == 42 and a["d"] == "2026-11-22"


def test_truncate_and_pattern(outbox, kafka):
    db = outbox.db
    db.execute("CREATE SCHEMA legacy")
    db.execute("CREATE TABLE legacy.a (id int PRIMARY KEY)")
    db.execute("CREATE TABLE legacy.b (id int PRIMARY KEY)")
    prefix = start(outbox, '{ tables = "legacy.*"; snapshot = false; }')
    db.execute("INSERT INTO legacy.a VALUES (1)")
    db.execute("INSERT INTO legacy.b VALUES (1)")
    db.execute("TRUNCATE legacy.a")
    # The truncate goes to every partition, after each partition's earlier records.
    topic = prefix + ".legacy.a"
    wait_for(lambda: kafka.topic_partitions(topic), 60, what="the topic")
    n = len(kafka.topic_partitions(topic))
    assert n == 3  # the harness broker's num.partitions: a truncate must reach more than one
    msgs = kafka.consume(topic, until=1 + n, timeout=60)
    ops = {}
    for m in msgs:
        ops.setdefault(m["partition"], []).append(
            (m["key"], json.loads(m["value"])["op"]))
    assert sorted(ops) == list(range(n))
    assert sorted(o[-1] for o in ops.values()) == [(None, "t")] * n
    assert sorted(o for p in ops.values() for o in p[:-1]) == [(b'{"id":1}', "c")]
    assert records(kafka, prefix + ".legacy.b", 1)[0][1]["op"] == "c"


def test_table_without_key_is_refused(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.nokey (a int, b text)")
    outbox.reconfigure(capture='{ tables = "public.nokey"; snapshot = false; }',
                       extra_relay='topic_prefix = "%s";' % outbox.prefix)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    log = outbox.relay.log()
    assert "cannot capture table public.nokey: wal2json drops its updates and deletes: it has no " \
        "replica identity (add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL)" in log


def test_unkeyed_opt_in(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.nokey (a int, b text)")
    db.execute("ALTER TABLE public.nokey REPLICA IDENTITY FULL")  # else its updates are dropped
    prefix = start(outbox, '{ tables = "public.nokey"; unkeyed = true; snapshot = false; }')
    db.execute("INSERT INTO public.nokey VALUES (1, 'x')")
    db.execute("UPDATE public.nokey SET b = 'y'")
    got = records(kafka, prefix + ".public.nokey", 2)
    assert [k for k, _ in got[:2]] == [None, None]
    by_op = {v["op"]: v for _, v in got[:2]}  # no key: any partition, so no order between them
    assert by_op["c"]["after"] == {"a": 1, "b": "x"}
    assert by_op["u"]["before"] == {"a": 1, "b": "x"} and by_op["u"]["after"] == {"a": 1, "b": "y"}


def test_outbox_and_capture_share_the_stream(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, state text)")
    prefix = start(outbox, '{ tables = "public.accounts"; snapshot = false; }')
    with db.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO public.accounts VALUES (1, 'registered')")
        cur.execute("SELECT outbox.publish('user', '1', 'UserRegistered', '{\"id\": 1}'::jsonb)")
        conn.commit()
    assert records(kafka, prefix + ".public.accounts", 1)[0][1]["after"]["state"] == "registered"
    assert len(kafka.consume(outbox.topic("user"), until=1, timeout=60)) == 1


def test_key_change_is_a_delete_then_the_new_key(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.handles (handle text PRIMARY KEY, owner int)")
    prefix = start(outbox, '{ tables = "public.handles"; snapshot = false; }')
    db.execute("INSERT INTO public.handles VALUES ('alice', 1)")
    db.execute("UPDATE public.handles SET handle = 'alice2' WHERE handle = 'alice'")
    got = records(kafka, prefix + ".public.handles", 4)
    # Per key, in order (the two keys may live in different partitions).
    old = [v for k, v in got if k == {"handle": "alice"}]
    new = [v for k, v in got if k == {"handle": "alice2"}]
    assert [v and v["op"] for v in old] == ["c", "d", None]
    assert old[1]["before"] == {"handle": "alice"}
    assert [v["op"] for v in new] == ["u"] and new[0]["after"] == {"handle": "alice2", "owner": 1}


def test_at_least_once_capture(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.plain (id int PRIMARY KEY, v text)")
    prefix = start(outbox, '{ tables = "public.plain"; snapshot = false; }', 'delivery = "at-least-once";')
    db.execute("INSERT INTO public.plain VALUES (1, 'x')")
    db.execute("DELETE FROM public.plain")
    got = records(kafka, prefix + ".public.plain", 3)
    assert [v and v["op"] for _, v in got[:3]] == ["c", "d", None]


def test_snapshot_needs_exactly_once(outbox, tmp_path):
    outbox.reconfigure(capture='{ tables = "public.x"; }', extra_relay='delivery = "at-least-once";')
    code, out = relayctl.run_once(["check-config", outbox.config_path])
    assert code == 2
    assert 'capture[0].snapshot needs relay.delivery = "exactly-once"' in out and ":" in out.split()[0]


def test_preflight_checks_captured_tables(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.keyed (id int PRIMARY KEY)")
    db.execute("CREATE TABLE public.bare (a int)")
    db.execute("CREATE ROLE capture_reader LOGIN REPLICATION PASSWORD 'pw'")
    try:
        dsn = db.dsn + " user=capture_reader password=pw"
        outbox.reconfigure(capture='{ tables = "public.*"; }')
        conf = open(outbox.config_path).read().replace('conninfo = "%s"' % db.dsn, 'conninfo = "%s"' % dsn)
        open(outbox.config_path, "w").write(conf)
        code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
        assert code == 1, out
        assert "FAIL captured table public.bare has a replica identity: wal2json would drop its " \
            "updates and deletes: ALTER TABLE public.bare ADD PRIMARY KEY" in out
        assert "FAIL captured table public.bare has a key: ALTER TABLE public.bare ADD PRIMARY KEY" in out
        assert "FAIL the role may read public.keyed (for snapshots): GRANT SELECT ON public.keyed" in out
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO capture_reader")
        db.execute("ALTER TABLE public.bare ADD PRIMARY KEY (a)")
        code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
        assert "ok   capture public.* takes" in out, out
    finally:
        db.execute("DROP OWNED BY capture_reader")
        db.execute("DROP ROLE capture_reader")


def test_table_without_key_created_later_is_dead_lettered(outbox, kafka):
    db = outbox.db
    db.execute("CREATE SCHEMA late")
    db.execute("CREATE TABLE late.first (id int PRIMARY KEY)")
    prefix = start(outbox, '{ tables = "late.*"; snapshot = false; }',
                   'dead_letter_topic = "%s.dlq";' % outbox.prefix)
    db.execute("CREATE TABLE late.nokey (a int)")
    db.execute("INSERT INTO late.nokey VALUES (1)")
    db.execute("INSERT INTO late.first VALUES (1)")
    dead = kafka.consume(outbox.prefix + ".dlq", until=1, timeout=60)
    assert len(dead) == 1
    headers = dict(dead[0]["headers"])
    assert headers["dlq_source"] == b"late.nokey"
    assert b"no replica identity" in headers["dlq_reason"]
    assert records(kafka, prefix + ".late.first", 1)[0][1]["op"] == "c"


def test_key_must_be_in_the_replica_identity(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.people (id int PRIMARY KEY, email text NOT NULL UNIQUE, name text)")
    db.execute("ALTER TABLE public.people REPLICA IDENTITY USING INDEX people_email_key")
    # The default key follows the identity index, so deletes carry it.
    prefix = start(outbox, '{ tables = "public.people"; snapshot = false; }')
    db.execute("INSERT INTO public.people VALUES (1, 'a@x', 'A')")
    db.execute("DELETE FROM public.people")
    got = records(kafka, prefix + ".public.people", 3)
    assert [k for k, _ in got[:3]] == [{"email": "a@x"}] * 3
    assert outbox.relay.stop() == 0
    # key_columns outside the identity: refused at start.
    outbox.reconfigure(capture='{ tables = "public.people"; key_columns = ["id"]; snapshot = false; }',
                       extra_relay='topic_prefix = "%s";' % outbox.prefix)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    assert "cannot capture table public.people: its key columns are not all in its replica identity" \
        in outbox.relay.log()


def test_columns_added_dropped_and_renamed_while_running(outbox, kafka):
    """ALTER TABLE while the relay streams: the first change that does not fit the columns as
    read has the catalog read again, so new columns appear, dropped ones are not reported as
    unchanged TOAST, and a renamed key column keys the records under its new name. (Each step
    waits for the relay: docs/change-capture.md says what a relay behind an ALTER does.)"""
    db = outbox.db
    db.execute("CREATE TABLE public.evolving (id int PRIMARY KEY, a text, b int)")
    prefix = start(outbox, '{ tables = "public.evolving"; snapshot = false; }')
    topic = prefix + ".public.evolving"
    seen = []

    def step(sql, n):
        """Runs the statements, then waits for n more records; returns them as (key, value)."""
        for stmt in sql:
            db.execute(stmt)
        got = records(kafka, topic, len(seen) + n)
        new = [r for r in got if r not in seen][:n] if len(got) > len(seen) else []
        seen.extend(new)
        return new

    (k, v), = step(["INSERT INTO public.evolving VALUES (1, 'x', 1)"], 1)
    assert v["after"] == {"id": 1, "a": "x", "b": 1}
    (k, v), = step(["ALTER TABLE public.evolving ADD COLUMN c text",
                    "INSERT INTO public.evolving VALUES (2, 'y', 2, 'z')"], 1)
    assert v["after"] == {"id": 2, "a": "y", "b": 2, "c": "z"}
    (k, u), = step(["ALTER TABLE public.evolving DROP COLUMN b",
                    "UPDATE public.evolving SET a = 'x2' WHERE id = 1"], 1)
    assert u["op"] == "u" and u["after"] == {"id": 1, "a": "x2", "c": None}
    assert "unchanged_toast" not in u
    four = step(["ALTER TABLE public.evolving RENAME COLUMN id TO uid",
                 "INSERT INTO public.evolving VALUES (4, 'u', 't')",
                 "DELETE FROM public.evolving WHERE uid = 4"], 3)
    assert [k for k, _ in four] == [{"uid": 4}] * 3
    assert [v and v["op"] for _, v in four] == ["c", "d", None]
    assert four[0][1]["after"] == {"uid": 4, "a": "u", "c": "t"}
    log = outbox.relay.log()
    # Read again after the added, the dropped and the renamed column; never for the delete.
    assert log.count("does not fit the columns of public.evolving as read") == 3, log
    assert "dead-letter" not in log


def test_migration_open_while_the_catalog_is_read(outbox, kafka):
    """A migration (rename of the key column, then an update) is still open when the relay reads
    the table's catalog entry: the entry cannot see it, and the update's own WAL position is
    older than the read. The check goes by the transaction's commit, so the update is keyed by
    the new name instead of being dead-lettered."""
    db = outbox.db
    db.execute("CREATE TABLE public.migrating (id int PRIMARY KEY, a text)")
    prefix = start(outbox, '{ tables = "public.migrating"; snapshot = false; }')
    db.execute("INSERT INTO public.migrating VALUES (1, 'x')")
    assert records(kafka, prefix + ".public.migrating", 1)[0][0] == {"id": 1}
    assert outbox.relay.stop() == 0  # the slot exists: a restart does not wait for the migration
    with db.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE public.migrating RENAME COLUMN id TO uid")
        cur.execute("UPDATE public.migrating SET a = 'y' WHERE uid = 1")
        # Another commit writes the WAL out past the update, so the catalog read at start comes
        # after the update's own position.
        db.execute("CREATE TABLE public.unrelated (x int)")
        since = len(outbox.relay.log())
        outbox.relay.start()
        outbox.relay.wait_streaming()  # the catalog was read at start, without the rename
        conn.commit()
    got = records(kafka, prefix + ".public.migrating", 2)
    (_, u), = [r for r in got if r[0] == {"uid": 1}]  # its own partition: no order with id 1's
    assert u["op"] == "u" and u["after"] == {"uid": 1, "a": "y"}
    log = outbox.relay.log()[since:]
    assert "does not fit the columns of public.migrating as read" in log
    assert "dead-letter" not in log


def test_table_dropped_while_the_relay_is_behind(outbox, kafka):
    """The relay is behind (paused) while a column is added, a row inserted and the table
    dropped: the insert does not fit the entry, the catalog no longer has the table, so the
    entry read before is kept and the row is published under its key (not dead-lettered)."""
    db = outbox.db
    db.execute("CREATE TABLE public.doomed (id int PRIMARY KEY, a text)")
    prefix = start(outbox, '{ tables = "public.doomed"; snapshot = false; }')
    db.execute("INSERT INTO public.doomed VALUES (1, 'x')")
    assert records(kafka, prefix + ".public.doomed", 1)[0][0] == {"id": 1}
    outbox.relay.proc.send_signal(signal.SIGSTOP)
    try:
        db.execute("ALTER TABLE public.doomed ADD COLUMN b text")
        db.execute("INSERT INTO public.doomed VALUES (2, 'y', 'z')")
        db.execute("DROP TABLE public.doomed")
    finally:
        outbox.relay.proc.send_signal(signal.SIGCONT)
    got = records(kafka, prefix + ".public.doomed", 2)
    (_, v), = [r for r in got if r[0] == {"id": 2}]
    assert v["op"] == "c" and v["after"] == {"id": 2, "a": "y", "b": "z"}
    log = outbox.relay.log()
    assert "public.doomed is no longer in the catalog" in log
    assert "dead-letter" not in log


def test_change_of_a_table_whose_escaped_name_is_long_is_dead_lettered(outbox, kafka):
    """43 x U+0001 is 43 bytes as a PostgreSQL name but 258 once wal2json escapes it: its
    change is dead-lettered (no valid topic name can be made of it), never skipped, and the
    changes after it are published."""
    db = outbox.db
    db.execute("CREATE SCHEMA odd")
    db.execute("CREATE TABLE odd.plain (id int PRIMARY KEY)")
    prefix = start(outbox, '{ tables = "odd.*"; snapshot = false; }',
                   'dead_letter_topic = "%s.dlq";' % outbox.prefix)
    odd = 'odd.U&"%s"' % ("\\0001" * 43)
    db.execute("CREATE TABLE %s (id int PRIMARY KEY)" % odd)
    db.execute("INSERT INTO %s VALUES (7)" % odd)
    db.execute("INSERT INTO odd.plain VALUES (1)")
    dead = kafka.consume(outbox.prefix + ".dlq", until=1, timeout=60)
    assert len(dead) == 1, outbox.relay.log()
    headers = dict(dead[0]["headers"])
    assert headers["dlq_source"] == b"odd." + b"\x01" * 43
    assert b"not a valid Kafka topic name" in headers["dlq_reason"]
    assert json.loads(dead[0]["value"])["columns"][0]["value"] == 7
    assert records(kafka, prefix + ".odd.plain", 1)[0][1]["after"] == {"id": 1}


@pytest.mark.parametrize("fmt", ["text", "logfmt", "json"])
def test_a_table_name_cannot_forge_a_log_line(outbox, kafka, fmt):
    """A table named with a newline and a fake log line: the relay's log line that names it
    (its change is dead-lettered: a newline makes no topic name) stays one line, escaped."""
    db = outbox.db
    forged = "\n2099-01-01T00:00:00.000Z error forged"
    db.execute("CREATE SCHEMA odd")
    start(outbox, '{ tables = "odd.*"; snapshot = false; }',
          'dead_letter_topic = "%s.dlq"; log_format = "%s";' % (outbox.prefix, fmt))
    db.execute('CREATE TABLE odd."x%s" (id int PRIMARY KEY)' % forged)
    db.execute('INSERT INTO odd."x%s" VALUES (1)' % forged)
    dead = kafka.consume(outbox.prefix + ".dlq", until=1, timeout=60)
    assert len(dead) == 1 and dict(dead[0]["headers"])["dlq_source"] == ("odd.x" + forged).encode()
    lines = [l for l in outbox.relay.log().splitlines() if l and not l.startswith("====")]
    assert not [l for l in lines if l.startswith("2099")]
    named = [l for l in lines if "error forged" in l]
    assert named and all("dead-lettering the row of odd.x" in l for l in named), named
    if fmt == "json":
        msgs = [json.loads(l)["msg"] for l in lines]
        assert any(("dead-lettering the row of odd.x" + forged) in m for m in msgs)
    else:
        assert all(("odd.x\\n2099-01-01T00:00:00.000Z error forged") in l for l in named)


def test_key_change_of_a_row_too_large_for_kafka_is_dead_lettered_whole_and_the_relay_goes_on(outbox, kafka):
    """The poison pill: on a REPLICA IDENTITY FULL table, the key of a row of over 1 MB changes.
    Its delete of the old key and its update are each too large for Kafka: the key change
    (delete, tombstone, update) is dead-lettered as one unit, nothing of it is published, and
    the relay goes on, also after a restart."""
    db = outbox.db
    db.execute("CREATE TABLE public.s_big (id int PRIMARY KEY, body text)")
    db.execute("ALTER TABLE public.s_big REPLICA IDENTITY FULL")
    # Random text: it does not compress, so the row stays over 1 MB in the WAL and in records.
    db.execute("INSERT INTO public.s_big SELECT 1, string_agg(md5(random()::text), '') "
               "FROM generate_series(1, 40000)")
    dlq = outbox.prefix + ".dlq"
    prefix = start(outbox, '{ tables = "public.s_big"; snapshot = false; }', 'dead_letter_topic = "%s";' % dlq)
    db.execute("UPDATE public.s_big SET id = 2 WHERE id = 1")
    db.execute("INSERT INTO public.s_big VALUES (3, 'small')")
    got = records(kafka, prefix + ".public.s_big", 1)
    assert [(k, v and v["op"]) for k, v in got] == [({"id": 3}, "c")], got
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1
    h = dict(dead[0]["headers"])
    assert b"too large" in h["dlq_reason"].lower(), h
    assert h["dlq_source"] == b"public.s_big" and int(h["dlq_truncated_from"]) > 1280000
    assert json.loads(dead[0]["key"]) == {"id": 2}  # the update's key, as any update's dead letter
    assert outbox.relay.proc.poll() is None
    # A restart reads nothing of it again: still running, the next change published.
    assert outbox.relay.stop() == 0
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("INSERT INTO public.s_big VALUES (4, 'after')")
    got = records(kafka, prefix + ".public.s_big", 2)
    assert sorted(k["id"] for k, _ in got) == [3, 4]  # (partitions differ: no order between keys)
    # Read to the end: nothing of the key change (no delete of id 1, no update of id 2).
    everything = kafka.consume(prefix + ".public.s_big", timeout=30)
    assert sorted(json.loads(m["key"])["id"] for m in everything) == [3, 4]
    assert len(kafka.consume(dlq, timeout=30)) == 1
    assert outbox.relay.proc.poll() is None


def test_key_change_whose_update_alone_is_too_large_is_not_half_published(outbox, kafka):
    """A row of 600 kB on a REPLICA IDENTITY FULL table: the delete of the old key fits Kafka's
    1 MB, the update (old and new row) does not. The old key is not deleted with the new one
    missing: the key change is dead-lettered whole."""
    db = outbox.db
    db.execute("CREATE TABLE public.s_mid (id int PRIMARY KEY, body text)")
    db.execute("ALTER TABLE public.s_mid REPLICA IDENTITY FULL")
    db.execute("INSERT INTO public.s_mid SELECT 1, string_agg(md5(random()::text), '') "
               "FROM generate_series(1, 19000)")
    dlq = outbox.prefix + ".dlq"
    prefix = start(outbox, '{ tables = "public.s_mid"; snapshot = false; }', 'dead_letter_topic = "%s";' % dlq)
    db.execute("UPDATE public.s_mid SET id = 2 WHERE id = 1")
    db.execute("INSERT INTO public.s_mid VALUES (3, 'small')")
    records(kafka, prefix + ".public.s_mid", 1)
    everything = kafka.consume(prefix + ".public.s_mid", timeout=30)
    assert [json.loads(m["key"]) for m in everything] == [{"id": 3}]
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1
    assert b"the update of this key change" in dict(dead[0]["headers"])["dlq_reason"]
    assert outbox.relay.proc.poll() is None


@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_change_the_broker_refuses_as_too_large_is_dead_lettered_and_the_relay_goes_on(outbox, kafka, delivery):
    """The topic's max.message.bytes (2000) is below the relay's limit (1 MB), and with
    compression on the relay leaves the topic's limit to the broker: librdkafka takes the 5 kB
    record (about 3 kB compressed) and the broker refuses it in the delivery report. The Kafka
    transaction is aborted and read again, the change dead-lettered this time, and the relay goes
    on, with the changes before and after it published once."""
    db = outbox.db
    db.execute("CREATE TABLE public.notes (id int PRIMARY KEY, body text)")
    dlq = outbox.prefix + ".dlq"
    topic = outbox.prefix + ".public.notes"
    kafka.create_topic(topic, partitions=1, config={"max.message.bytes": "2000"})
    outbox.reconfigure(capture='{ tables = "public.notes"; snapshot = false; }',
                       extra_relay='topic_prefix = "%s"; dead_letter_topic = "%s"; delivery = "%s";'
                       % (outbox.prefix, dlq, delivery),
                       extra_kafka='compression_type = "gzip";')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    # One transaction: the refusal aborts the Kafka transaction with the rows around it.
    db.execute("INSERT INTO public.notes VALUES (1, 'before'), (2, (SELECT string_agg(md5(i::text), '') "
               "FROM generate_series(1, 160) i)), (3, 'after')")
    db.execute("INSERT INTO public.notes VALUES (4, 'next')")
    records(kafka, topic, 3)
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1 and json.loads(dead[0]["key"]) == {"id": 2}
    assert b"the broker refused its record" in dict(dead[0]["headers"])["dlq_reason"]
    ids = [json.loads(m["key"])["id"] for m in kafka.consume(topic, timeout=30)]
    if delivery == "exactly-once":
        assert ids == [1, 3, 4]
    else:  # rows read again after the refusal may come twice, never out of order per key
        assert set(ids) == {1, 3, 4} and ids[-1] == 4
    assert outbox.relay.proc.poll() is None


def test_a_table_name_cannot_forge_a_preflight_line(outbox, kafka):
    """preflight names captured tables; one named with a newline and a fake "ok" line shows
    up escaped in its own FAIL line."""
    db = outbox.db
    db.execute('CREATE TABLE public."x\nok   forged" (a int)')
    outbox.reconfigure(capture='{ tables = "public.*"; }')
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert code == 1, out
    assert not [l for l in out.splitlines() if l.startswith("ok   forged")], out
    assert "FAIL captured table public.x\\nok   forged has a key" in out, out


def test_update_carries_the_old_row_when_full_identity_is_set_after_the_catalog_was_read(outbox, kafka):
    """REPLICA IDENTITY FULL set while the relay runs (its catalog entry says DEFAULT): the
    update's own identity is the whole old row, and it is published as before."""
    db = outbox.db
    db.execute("CREATE TABLE public.later_full (id int PRIMARY KEY, title text)")
    prefix = start(outbox, '{ tables = "public.later_full"; snapshot = false; }')
    db.execute("INSERT INTO public.later_full VALUES (1, 'one')")
    db.execute("ALTER TABLE public.later_full REPLICA IDENTITY FULL")
    db.execute("UPDATE public.later_full SET title = 'two' WHERE id = 1")
    db.execute("ALTER TABLE public.later_full REPLICA IDENTITY DEFAULT")
    db.execute("UPDATE public.later_full SET title = 'three' WHERE id = 1")
    got = records(kafka, prefix + ".public.later_full", 3)
    assert [v["op"] for _, v in got] == ["c", "u", "u"]
    assert got[1][1]["before"] == {"id": 1, "title": "one"} and got[1][1]["after"] == {"id": 1, "title": "two"}
    assert got[2][1]["before"] is None


def test_unchanged_toast_names_exactly_what_wal2json_left_out_or_says_it_cannot_know(outbox, kafka):
    """unchanged_toast is computed from a catalog entry: one read after a column was dropped
    names nothing that was not left out; one read after an ALTER TABLE that came later than the
    update (the relay behind it) cannot tell, and says null instead of guessing."""
    db = outbox.db
    big = "".join("%08x" % (i * 2654435761 % 4294967296) for i in range(1000))
    db.execute("CREATE TABLE public.dropper (id int PRIMARY KEY, keep text, gone text)")
    prefix = start(outbox, '{ tables = "public.*"; snapshot = false; }')
    topic = prefix + ".public.dropper"
    db.execute("INSERT INTO public.dropper VALUES (1, 'k', 'g')")
    db.execute("ALTER TABLE public.dropper DROP COLUMN gone")
    db.execute("UPDATE public.dropper SET keep = 'k2' WHERE id = 1")
    (_, u), = [r for r in records(kafka, topic, 2) if r[1]["op"] == "u"]
    assert u["after"] == {"id": 1, "keep": "k2"} and "unchanged_toast" not in u, u
    # Behind: a table created, updated (body left out), then given a column; its catalog entry
    # is first read after all of it.
    outbox.relay.proc.send_signal(signal.SIGSTOP)
    try:
        db.execute("CREATE TABLE public.fresh (id int PRIMARY KEY, body text)")
        db.execute("ALTER TABLE public.fresh ALTER COLUMN body SET STORAGE EXTERNAL")
        db.execute("INSERT INTO public.fresh VALUES (1, %s)", (big,))
        db.execute("UPDATE public.fresh SET id = id WHERE id = 1")
        db.execute("ALTER TABLE public.fresh ADD COLUMN c int")
    finally:
        outbox.relay.proc.send_signal(signal.SIGCONT)
    got = records(kafka, prefix + ".public.fresh", 2)
    u = got[1][1]
    assert u["op"] == "u" and u["after"] == {"id": 1}
    assert "unchanged_toast" in u and u["unchanged_toast"] is None, u  # not ["body", "c"]


def test_a_table_a_pattern_takes_that_cannot_be_captured_does_not_block_the_start(outbox, kafka):
    """Under a pattern, tables without replica identity or without a valid topic name exist
    before the start: the relay starts anyway, says so in the log and a metric, dead-letters
    their changes, and streams the other tables; named explicitly, such a table still refuses
    the start."""
    import harness
    from test_metrics import http_get
    db = outbox.db
    db.execute("CREATE SCHEMA mixed")
    db.execute("CREATE TABLE mixed.good (id int PRIMARY KEY)")
    db.execute("CREATE TABLE mixed.nokey (a int)")
    db.execute('CREATE TABLE mixed."bad name" (id int PRIMARY KEY)')
    port = harness.free_port()
    dlq = outbox.prefix + ".dlq"
    prefix = start(outbox, '{ tables = "mixed.*"; snapshot = false; }',
                   'dead_letter_topic = "%s"; metrics_listen = ":%d";' % (dlq, port))
    log = outbox.relay.log()
    assert "capture: cannot capture table mixed.nokey (taken by the pattern mixed.*): wal2json " \
        "drops its updates and deletes" in log, log
    assert "cannot capture table mixed.bad name (taken by the pattern mixed.*): the topic name" in log
    wait_for(lambda: "outbox_relay_capture_refused_tables 2\n" in http_get(port, "/metrics")[1], 30,
             what="the metric")
    db.execute("INSERT INTO mixed.nokey VALUES (1)")
    db.execute('INSERT INTO mixed."bad name" VALUES (1)')
    db.execute("INSERT INTO mixed.good VALUES (1)")
    assert records(kafka, prefix + ".mixed.good", 1)[0][1]["op"] == "c"
    dead = kafka.consume(dlq, until=2, timeout=60)
    assert sorted(dict(m["headers"])["dlq_source"] for m in dead) == [b"mixed.bad name", b"mixed.nokey"]
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert code == 1
    assert "FAIL captured table mixed.nokey has a replica identity" in out, out
    assert "FAIL captured table mixed.bad name has a valid topic name: the template " \
        "${prefix}.${schema}.${table} gives \"%s.mixed.bad name\"" % outbox.prefix in out, out
    assert outbox.relay.stop() == 0
    outbox.reconfigure(capture='{ tables = "mixed.nokey"; snapshot = false; }',
                       extra_relay='topic_prefix = "%s";' % outbox.prefix)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    assert "cannot capture table mixed.nokey: wal2json drops" in outbox.relay.log()


def test_snapshot_row_larger_than_the_topic_allows_is_dead_lettered_and_the_relay_goes_on(outbox, kafka):
    """librdkafka takes the row but the topic's max.message.bytes (2000) is smaller: the relay
    knows the topic's limit, dead-letters the row and goes on (it read the chunk again forever)."""
    from test_snapshot import configure
    db = outbox.db
    db.execute("CREATE TABLE public.blobs2 (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO public.blobs2 VALUES (1, 'a')")
    db.execute("INSERT INTO public.blobs2 SELECT 2, string_agg(md5(i::text), '') FROM generate_series(1, 160) i")
    db.execute("INSERT INTO public.blobs2 VALUES (3, 'c')")
    dlq = outbox.prefix + ".dlq"
    topic = outbox.prefix + ".public.blobs2"
    kafka.create_topic(topic, partitions=1, config={"max.message.bytes": "2000"})
    configure(outbox, '{ tables = "public.blobs2"; }', 'dead_letter_topic = "%s";' % dlq)
    outbox.relay.start()
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1 and b'"id":2' in dead[0]["key"]
    db.execute("INSERT INTO public.blobs2 VALUES (4, 'd')")
    got = kafka.consume(topic, until=lambda ms: any(m["key"] == b'{"id":4}' for m in ms), timeout=60)
    assert [m["key"] for m in got if m["value"]] == [b'{"id":1}', b'{"id":3}', b'{"id":4}']
    assert outbox.relay.proc.poll() is None


def test_key_change_whose_update_the_topic_cannot_take_is_not_half_published_at_least_once(outbox, kafka):
    """At-least-once has no transaction to abort: the change is checked against the topic's own
    max.message.bytes before its delete goes out, and dead-lettered whole."""
    db = outbox.db
    db.execute("CREATE TABLE public.kc (id int PRIMARY KEY, body text)")
    db.execute("ALTER TABLE public.kc ALTER COLUMN body SET STORAGE PLAIN")
    dlq = outbox.prefix + ".dlq"
    topic = outbox.prefix + ".public.kc"
    kafka.create_topic(topic, partitions=1, config={"max.message.bytes": "2000"})
    start(outbox, '{ tables = "public.kc"; snapshot = false; }',
          'dead_letter_topic = "%s"; delivery = "at-least-once";' % dlq)
    db.execute("INSERT INTO public.kc VALUES (1, 'small')")
    db.execute("UPDATE public.kc SET id = 2, body = (SELECT string_agg(md5(i::text), '') "
               "FROM generate_series(1, 160) i) WHERE id = 1")
    db.execute("INSERT INTO public.kc VALUES (4, 'next')")
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1
    msgs = kafka.consume(topic, until=lambda ms: any(m["key"] == b'{"id":4}' for m in ms), timeout=60)
    ops = [(m["key"], m["value"] and json.loads(m["value"])["op"]) for m in msgs]
    assert ops == [(b'{"id":1}', "c"), (b'{"id":4}', "c")], ops


def varint_size(n):
    """Bytes of a Kafka (zigzag) varint."""
    n, size = n << 1, 1
    while n >= 0x80:
        n, size = n >> 7, size + 1
    return size


def test_key_change_that_fits_the_topic_without_transaction_headers_is_published(outbox, kafka):
    """Room for the transaction context headers is kept only when they are on: a key change a
    few bytes under the topic's max.message.bytes is published, not dead-lettered."""
    db = outbox.db
    for t in ("kca", "kcb"):
        db.execute("CREATE TABLE public.%s (id int PRIMARY KEY, body text)" % t)
        db.execute("ALTER TABLE public.%s ALTER COLUMN body SET STORAGE PLAIN" % t)
    dlq = outbox.prefix + ".dlq"
    prefix = start(outbox, '{ tables = "public.*"; snapshot = false; }', 'dead_letter_topic = "%s";' % dlq)
    change = ["INSERT INTO public.%s VALUES (1, 'small')",
              "UPDATE public.%s SET id = 2, body = repeat('x', 1000) WHERE id = 1"]
    for s in change:
        db.execute(s % "kca")
    got = kafka.consume(prefix + ".public.kca", until=lambda ms: any(m["key"] == b'{"id":2}' for m in ms),
                        timeout=60)
    upd = [m for m in got if m["key"] == b'{"id":2}'][0]
    size = len(upd["key"]) + len(upd["value"]) + sum(
        varint_size(len(n)) + len(n) + varint_size(len(v)) + len(v) for n, v in upd["headers"])
    # The relay's own estimate: 36 bytes of record framing, 61 of batch; the same change on a
    # twin table (same name length) whose topic leaves 48 bytes spare, fewer than the 96 kept
    # for the headers.
    limit = 36 + size + 61 + 48
    kafka.create_topic(prefix + ".public.kcb", partitions=1, config={"max.message.bytes": str(limit)})
    for s in change:
        db.execute(s % "kcb")
    got = kafka.consume(prefix + ".public.kcb", until=lambda ms: any(m["key"] == b'{"id":2}' for m in ms),
                        timeout=60)
    assert any(m["key"] == b'{"id":2}' for m in got), "the key change was not published"
    assert kafka.consume(dlq, timeout=5) == []
    assert outbox.relay.proc.poll() is None
