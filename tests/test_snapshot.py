# test_snapshot.py: initial and on-demand snapshots of captured tables, consistent with the stream,
# exactly once, resumed after kill -9.
import json
import random
import re
import signal
import threading
import time

import psycopg2
import pytest

import relayctl
from harness import wait_for


def configure(outbox, capture, extra_relay=""):
    outbox.reconfigure(capture=capture,
                       extra_relay='topic_prefix = "%s"; %s' % (outbox.prefix, extra_relay))


def read_all(kafka, topic, at_least, timeout=120):
    msgs = kafka.consume(topic, until=lambda m: len(m) >= at_least, timeout=timeout)
    # Anything committed after at_least was reached: read to the end too.
    return kafka.consume(topic, timeout=timeout) if len(msgs) >= at_least else msgs


def decode(msgs):
    out = []
    for m in msgs:
        key = json.loads(m["key"]) if m["key"] else None
        value = json.loads(m["value"]) if m["value"] is not None else None
        out.append((m["partition"], m["offset"], key, value))
    return out


def final_state(records):
    """Applies the records in order (per partition, which keeps per-key order): {id: after}."""
    state = {}
    for _, _, key, value in sorted(records, key=lambda r: (r[0], r[1])):
        if key is None:
            continue
        if value is None or value["op"] == "d":
            state.pop(key["id"], None)
        else:
            state[key["id"]] = value["after"]
    return state


def table_state(db, table):
    return {row[0]: {"id": row[0], "balance": row[1], "version": row[2], "note": row[3]}
            for row in db.query("SELECT id, balance, version, note FROM %s" % table)}


def check_once(records):
    """At most one snapshot record per key, and every change (key, version, op) once."""
    seen_r, seen_changes = set(), set()
    for _, _, key, value in records:
        if value is None:
            continue
        ident = key["id"]
        if value["op"] == "r":
            assert ident not in seen_r, "two snapshot records for id %s" % ident
            seen_r.add(ident)
        else:
            row = value["after"] or value["before"]
            change = (ident, value["op"], row.get("version"), value["source"]["lsn"])
            assert change not in seen_changes, "change published twice: %r" % (change,)
            seen_changes.add(change)
    return seen_r


class Writers:
    """Threads that update, insert and delete rows of the table until stopped."""

    def __init__(self, db, table, first_new_id, n=2):
        self.db, self.table, self.stop_ev = db, table, threading.Event()
        self.next_id = first_new_id
        self.lock = threading.Lock()
        self.changes = 0
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(n)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.next_id

    def run(self, seed):
        rnd = random.Random(seed)
        conn = self.db.connect(autocommit=False)
        cur = conn.cursor()
        while not self.stop_ev.is_set():
            for _ in range(5):
                op = rnd.random()
                ident = rnd.randint(1, self.next_id)
                if op < 0.6:
                    cur.execute("UPDATE %s SET balance = balance + 1, version = version + 1 WHERE id = %%s"
                                % self.table, (ident,))
                elif op < 0.85:
                    cur.execute("INSERT INTO %s VALUES (%%s, 0, 1, 'new')" % self.table, (self.new_id(),))
                else:
                    cur.execute("DELETE FROM %s WHERE id = %%s" % self.table, (ident,))
            if rnd.random() < 0.1:
                conn.rollback()
            else:
                conn.commit()
                self.changes += 5
            time.sleep(0.002)
        conn.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)


def make_table(db, name, rows):
    db.execute("CREATE TABLE %s (id bigint PRIMARY KEY, balance bigint, version int, note text)" % name)
    db.execute("INSERT INTO %s SELECT g, g * 10, 1, repeat('x', 40) FROM generate_series(1, %d) g" % (name, rows))


def wait_caught_up(outbox, timeout=120):
    """Waits until the slot is confirmed past the WAL written so far (everything is in Kafka)."""
    target = outbox.db.query("SELECT pg_current_wal_lsn()")[0][0]
    wait_for(lambda: outbox.db.query(
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE slot_name = %s",
        (target, outbox.slot))[0][0] or outbox.relay.proc.poll() is not None,
        timeout, what="slot confirmed past %s" % target)
    assert outbox.relay.proc.poll() is None, outbox.relay.log()[-3000:]


def check_against_table(outbox, kafka, table, rows):
    """Once the relay caught up: no key snapshotted twice, no change twice, and the state the
    records build per key is the table's."""
    wait_caught_up(outbox)
    records = decode(read_all(kafka, outbox.prefix + "." + table, rows))
    check_once(records)
    assert final_state(records) == table_state(outbox.db, table)
    return records


def snapshot_seconds(log, table):
    """Seconds from the snapshot being queued to done, from the relay's log timestamps."""
    def ts(pattern):
        m = re.search(r"^(\S+) .*" + re.escape(pattern), log, re.M)
        return time.mktime(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + float("0." + m.group(1)[20:23])
    return ts("snapshot of %s done" % table) - ts("snapshot of %s queued" % table)


def test_initial_snapshot_then_stream(outbox, kafka):
    from test_metrics import scrape
    import harness

    db = outbox.db
    make_table(db, "public.accounts", 1000)
    port = harness.free_port()
    configure(outbox, '{ tables = "public.accounts"; }',
              'snapshot_chunk_rows = 300; metrics_listen = ":%d";' % port)
    outbox.relay.start()
    outbox.relay.wait_log("snapshot of public.accounts done: 1000 rows", timeout=60)
    # The metrics follow the progress committed to Kafka: all rows, no table left.
    wait_for(lambda: scrape(port).get("outbox_relay_snapshot_rows_total") == 1000, 30,
             what="1000 snapshot rows counted")
    assert scrape(port).get("outbox_relay_snapshot_tables_queued") == 0
    db.execute("UPDATE public.accounts SET version = 2 WHERE id = 7")
    topic = outbox.prefix + ".public.accounts"
    records = decode(read_all(kafka, topic, 1001))
    assert check_once(records) == set(range(1, 1001))
    snap = [v for _, _, _, v in records if v["op"] == "r"]
    assert all(v["source"]["snapshot"] is True and v["before"] is None for v in snap)
    assert final_state(records) == table_state(db, "public.accounts")
    assert relayctl.newest_status(outbox.config_path)["snapshot"]["done"] == ["public.accounts"]
    # A restart does not snapshot again: the progress is stored with the checkpoint.
    assert outbox.relay.stop() == 0
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("UPDATE public.accounts SET version = 3 WHERE id = 8")
    wait_caught_up(outbox)
    assert outbox.relay.stop() == 0
    records = decode(kafka.consume(topic, timeout=60))
    assert sum(1 for r in records if r[3] and r[3]["op"] == "r") == 1000
    assert "queued" not in outbox.relay.log().split("==== start 1")[1]


def test_snapshot_of_200k_rows_while_writers_change_them(outbox, kafka):
    db = outbox.db
    rows = 200000
    make_table(db, "public.accounts", rows)
    configure(outbox, '{ tables = "public.accounts"; }')
    writers = Writers(db, "public.accounts", rows).start()
    try:
        outbox.relay.start()
        outbox.relay.wait_log("snapshot of public.accounts done", timeout=300)
    finally:
        writers.stop()
    check_against_table(outbox, kafka, "public.accounts", rows)
    log = outbox.relay.log()
    secs = snapshot_seconds(log, "public.accounts")
    print("\nsnapshot of %d rows with writers (%d changes): %.1f s, %.0f rows/s"
          % (rows, writers.changes, secs, rows / secs))
    assert writers.changes > 0


def test_snapshot_resumes_after_kill(outbox, kafka):
    db = outbox.db
    rows = 60000
    make_table(db, "public.accounts", rows)
    configure(outbox, '{ tables = "public.accounts"; }', 'snapshot_chunk_rows = 2000;')
    writers = Writers(db, "public.accounts", rows).start()
    try:
        outbox.relay.start()
        for kill in range(2):
            since = len(outbox.relay.log())
            outbox.relay.wait_log("rows so far", timeout=120, since=since)
            outbox.relay.proc.send_signal(signal.SIGKILL)
            outbox.relay.proc.wait()
            outbox.relay.start()
            outbox.relay.wait_log("snapshot progress from Kafka: resuming public.accounts", timeout=60,
                                  since=since)
        outbox.relay.wait_log("snapshot of public.accounts done", timeout=300)
    finally:
        writers.stop()
    check_against_table(outbox, kafka, "public.accounts", rows)


def test_snapshot_on_demand(outbox, kafka):
    db = outbox.db
    make_table(db, "public.accounts", 500)
    db.execute("CREATE TABLE public.later (id bigint PRIMARY KEY, balance bigint, version int, note text)")
    configure(outbox, '{ tables = "public.accounts"; snapshot = false; }, { tables = "public.later"; snapshot = false; }')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("INSERT INTO public.later VALUES (1, 1, 1, 'x')")
    code, out = relayctl.run_once(["snapshot", outbox.config_path, "public.accounts", "public.later"])
    assert code == 0, out
    outbox.relay.wait_log("snapshot of public.later done: 1 rows", timeout=60)
    records = decode(read_all(kafka, outbox.prefix + ".public.accounts", 500))
    assert check_once(records) == set(range(1, 501))
    later = decode(read_all(kafka, outbox.prefix + ".public.later", 2))
    assert [v["op"] for _, _, _, v in later] == ["c", "r"]
    code, out = relayctl.run_once(["snapshot", outbox.config_path, "public.other"])
    assert code == 2 and "public.other is not a table the capture list" in out
    assert outbox.relay.stop() == 0  # a clean exit (under valgrind: its leak report)


def test_snapshot_rows_look_like_stream_rows(outbox, kafka):
    """Every type prints the same in an r record as in a change record (and keys byte for byte)."""
    db = outbox.db
    db.execute("CREATE DOMAIN public.doc AS jsonb")
    db.execute("CREATE DOMAIN public.posint AS int CHECK (VALUE > 0)")
    db.execute("""CREATE TABLE public.typed (id char(6) PRIMARY KEY, n numeric, b bigint, f float8,
                  j jsonb, js json, raw bytea, tags text[], ts timestamptz, flag boolean, o oid,
                  d date, u uuid, nan numeric, inf float8, c char(3), v varchar(5), "we""ird" text,
                  dj public.doc DEFAULT '{"in": "a domain"}', dp public.posint DEFAULT 3)""")
    db.execute("""INSERT INTO public.typed VALUES ('ab', 12345678901234567890.123456789,
                  9223372036854775807, 0.1, '{"a": [1, 2.50, "x"]}', '{"k" : "v"}', '\\x00ff10',
                  '{a,"b c"}', '2026-11-22 10:00:00.123456+00', true, 42, '2026-11-22',
                  '00000000-0000-0000-0000-000000000001', 'NaN', 'Infinity', 'x', 'yz',
                  E'line\\nbreak "quoted"')""")
    configure(outbox, '{ tables = "public.typed"; }')
    outbox.relay.start()
    outbox.relay.wait_log("snapshot of public.typed done: 1 rows", timeout=60)
    db.execute("UPDATE public.typed SET flag = flag")
    msgs = kafka.consume(outbox.prefix + ".public.typed", until=2, timeout=60)
    assert len(msgs) == 2
    by_op = {json.loads(m["value"])["op"]: m for m in msgs}

    def after(raw):
        text = raw.decode()
        return text[text.index('"after":') + 8:text.index(',"source"')]

    assert by_op["r"]["key"] == by_op["u"]["key"] == b'{"id":"ab    "}'
    assert after(by_op["r"]["value"]) == after(by_op["u"]["value"])
    row = json.loads(after(by_op["r"]["value"]))
    assert row["o"] == 42 and row["nan"] is None and row["inf"] is None and row["c"] == "x  "
    assert row["raw"] == "00ff10" and row["j"] == {"a": [1, 2.5, "x"]}
    # A domain over jsonb is JSON (wal2json names its base type); one over int is a string, as
    # wal2json prints a domain's value.
    assert row["dj"] == {"in": "a domain"} and row["dp"] == "3"


def test_invalid_utf8_in_captured_rows_is_dead_lettered(pg, kafka, tmp_path):
    """A SQL_ASCII database can hold text that is not UTF-8: such a row, streamed or snapshotted,
    goes to the dead-letter topic with its reason; the rows around it are published."""
    import uuid
    db = pg.create_database("t_cap_ascii_" + uuid.uuid4().hex[:8], encoding="SQL_ASCII")
    prefix, slot = "t" + uuid.uuid4().hex[:10], "relay_" + uuid.uuid4().hex[:10]
    conf = str(tmp_path / "relay.conf")
    relay = relayctl.Relay(conf, str(tmp_path))
    try:
        db.execute("CREATE TABLE public.people (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO public.people VALUES (1, 'ok'), "
                   "(2, 'caf' || convert_from('\\xe9'::bytea, 'SQL_ASCII'))")
        relayctl.write_config(conf, db.dsn, kafka.bootstrap, slot, "unused", sources="",
                              capture='{ tables = "public.people"; }',
                              extra_relay='topic_prefix = "%s"; dead_letter_topic = "%s.dlq";' % (prefix, prefix))
        text = open(conf).read().replace("sources = (  );\n", "")  # capture only: no outbox
        open(conf, "w").write(text)
        relay.start()
        relay.wait_log("snapshot of public.people done", timeout=60)
        db.execute("INSERT INTO public.people VALUES (3, 'x' || convert_from('\\xff'::bytea, 'SQL_ASCII'))")
        db.execute("INSERT INTO public.people VALUES (4, 'fine')")
        good = decode(kafka.consume(prefix + ".public.people", until=2, timeout=60))
        assert sorted(k["id"] for _, _, k, _ in good) == [1, 4]
        dead = kafka.consume(prefix + ".dlq", until=2, timeout=60)
        reasons = sorted(dict(m["headers"])["dlq_reason"].decode() for m in dead)
        assert reasons == ["invalid UTF-8 in a snapshot row (its text is not UTF-8)",
                           "invalid UTF-8 in the row (its text is not UTF-8)"]
        assert all(dict(m["headers"])["dlq_source"] == b"public.people" for m in dead)
        assert relay.stop() == 0
    finally:
        relay.kill()
        pg.drop_database(db.name)


def test_snapshot_on_demand_while_writers_change_the_table(outbox, kafka):
    """A snapshot requested while the stream runs: per key, the final state is the table's, and
    no change is published twice or lost among the snapshot rows."""
    db = outbox.db
    rows = 30000
    make_table(db, "public.accounts", rows)
    configure(outbox, '{ tables = "public.accounts"; snapshot = false; }', 'snapshot_chunk_rows = 1000;')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(db, "public.accounts", rows).start()
    try:
        wait_for(lambda: writers.changes > 200, 60, what="writers under way")
        code, out = relayctl.run_once(["snapshot", outbox.config_path, "public.accounts"])
        assert code == 0, out
        outbox.relay.wait_log("snapshot of public.accounts done", timeout=300)
    finally:
        writers.stop()
    # Rows never changed are known only from the snapshot: the final state must still match.
    check_against_table(outbox, kafka, "public.accounts", rows)
    assert outbox.relay.stop() == 0


def test_snapshot_row_too_large_for_kafka_is_dead_lettered_and_the_snapshot_goes_on(outbox, kafka):
    """A row of over 1 MB read by a snapshot: Kafka refuses its record, so it is dead-lettered
    (the row as PostgreSQL printed it, cut to 64 KiB) and the snapshot and the stream go on,
    also after a restart."""
    db = outbox.db
    db.execute("CREATE TABLE public.blobs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO public.blobs VALUES (1, 'a')")
    db.execute("INSERT INTO public.blobs SELECT 2, string_agg(md5(random()::text), '') "
               "FROM generate_series(1, 40000)")
    db.execute("INSERT INTO public.blobs VALUES (3, 'c')")
    dlq = outbox.prefix + ".dlq"
    configure(outbox, '{ tables = "public.blobs"; }', 'dead_letter_topic = "%s";' % dlq)
    outbox.relay.start()
    outbox.relay.wait_log("snapshot of public.blobs done: 3 rows", timeout=60)
    db.execute("INSERT INTO public.blobs VALUES (4, 'd')")
    topic = outbox.prefix + ".public.blobs"
    records = decode(read_all(kafka, topic, 3))
    assert sorted(k["id"] for _, _, k, _ in records) == [1, 3, 4]
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1 and json.loads(dead[0]["key"]) == {"id": 2}
    h = dict(dead[0]["headers"])
    assert b"too large" in h["dlq_reason"].lower() and h["dlq_source"] == b"public.blobs"
    assert outbox.relay.stop() == 0
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("INSERT INTO public.blobs VALUES (5, 'e')")
    assert sorted(k["id"] for _, _, k, _ in decode(read_all(kafka, topic, 4))) == [1, 3, 4, 5]
    assert outbox.relay.proc.poll() is None


def test_a_table_created_while_the_relay_runs_is_snapshotted_at_most_once(outbox, kafka):
    """A table a pattern takes, created while the relay runs: its rows came through the stream.
    The next start snapshots it once (the relay cannot tell it from a table renamed into the
    pattern, whose older rows never came); later starts do not."""
    db = outbox.db
    db.execute("CREATE SCHEMA grow")
    configure(outbox, '{ tables = "grow.*"; }')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("CREATE TABLE grow.later (id int PRIMARY KEY)")
    db.execute("INSERT INTO grow.later SELECT generate_series(1, 5)")
    topic = outbox.prefix + ".grow.later"
    assert len(read_all(kafka, topic, 5)) == 5
    for run in (1, 2, 3):
        assert outbox.relay.stop() == 0
        outbox.relay.start()
        outbox.relay.wait_streaming()
        db.execute("INSERT INTO grow.later VALUES (%s)", (100 + run,))
        wait_for(lambda: any(m["key"] == b'{"id":%d}' % (100 + run) for m in kafka.consume(topic, timeout=5)),
                 60, what="the row after start %d" % run)
    ops = [json.loads(m["value"])["op"] for m in kafka.consume(topic, timeout=30)]
    assert ops.count("c") == 8
    assert outbox.relay.log().count("snapshot of grow.later queued") == 1
    assert ops.count("r") in (5, 6), ops  # once (with row 101 when it came first)
