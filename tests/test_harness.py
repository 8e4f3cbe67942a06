# Smoke tests of the test harness: wal2json decoding in PostgreSQL and transactions in Kafka.
import json
import os
import uuid

import pytest

import harness


def test_wal2json_sees_insert(db):
    """A wal2json slot created in the fresh database decodes an INSERT (format-version 2)."""
    slot = "smoke_" + uuid.uuid4().hex[:8]
    db.execute("CREATE TABLE outbox (id bigserial PRIMARY KEY, topic text NOT NULL, payload text)")
    db.query("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
    db.execute("INSERT INTO outbox (topic, payload) VALUES ('orders', 'hello')")
    rows = db.query("SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL, 'format-version', '2')", (slot,))
    changes = [json.loads(r[0]) for r in rows]
    assert [c["action"] for c in changes] == ["B", "I", "C"]
    insert = changes[1]
    assert insert["schema"] == "public" and insert["table"] == "outbox"
    columns = {c["name"]: c["value"] for c in insert["columns"]}
    assert columns["topic"] == "orders" and columns["payload"] == "hello"


def test_postgres_restart_and_walsender_kill(pg, db):
    """The server comes back on the same port after a crash; kill_walsenders finds no walsender when idle."""
    db.execute("CREATE TABLE t (x int)")
    pg.restart(mode="immediate")
    db.execute("INSERT INTO t VALUES (1)")
    assert db.query("SELECT count(*) FROM t") == [(1,)]
    assert pg.kill_walsenders() == []


def test_kafka_transactions_read_committed(kafka):
    """read_committed sees committed transactional messages only; read_uncommitted sees the aborted one too."""
    topic = "smoke-" + uuid.uuid4().hex[:8]
    kafka.create_topic(topic, partitions=1)
    producer = kafka.producer({"transactional.id": "smoke-" + uuid.uuid4().hex[:8]})
    producer.init_transactions(30)
    for value, commit in ((b"one", True), (b"aborted", False), (b"two", True)):
        producer.begin_transaction()
        producer.produce(topic, key=b"k", value=value, headers=[("h", b"v")])
        if commit:
            producer.commit_transaction(30)
        else:
            producer.flush(30)
            producer.abort_transaction(30)

    committed = kafka.consume([topic], until=None, timeout=30)
    assert [m["value"] for m in committed] == [b"one", b"two"]
    assert committed[0]["key"] == b"k" and committed[0]["headers"] == [("h", b"v")]
    assert committed[0]["topic"] == topic and committed[0]["partition"] == 0

    everything = kafka.consume([topic], until=3, timeout=30, isolation="read_uncommitted")
    assert [m["value"] for m in everything] == [b"one", b"aborted", b"two"]


def test_the_broker_runs_the_version_kafka_version_names(kafka):
    """KAFKA_VERSION (default 3.9.1) picks the broker: its jars come from their own directory."""
    want = os.environ.get("KAFKA_VERSION") or harness.DEFAULT_KAFKA_VERSION
    assert kafka.version == want
    assert kafka._libs.endswith(os.path.join(".cache", "kafka", want, "libs"))
    assert os.path.exists(os.path.join(kafka._libs, "kafka_2.13-%s.jar" % want))
    with open("/proc/%d/cmdline" % kafka.proc.pid, "rb") as f:
        assert os.path.join(kafka._libs, "*").encode() in f.read().split(b"\0")


def test_commit_timestamps_on_by_default_and_off_on_request(pg, db):
    """The relay's recovery needs commit timestamps: the harness's servers track them unless
    a test turns them off."""
    db.execute("CREATE TABLE t (x int)")
    db.execute("INSERT INTO t VALUES (1)")
    assert db.query("SHOW track_commit_timestamp") == [("on",)]
    assert db.query("SELECT pg_xact_commit_timestamp(xmin) IS NOT NULL FROM t") == [(True,)]
    server = harness.Postgres(extra_settings={"track_commit_timestamp": "off"})
    try:
        server.start()
        assert server.query("SHOW track_commit_timestamp") == [("off",)]
    finally:
        server.cleanup()


def test_standby_streams_replays_and_is_promoted_without_logical_slots():
    """standby(): a pg_basebackup copy streaming from the primary, with the primary's rows and
    their commit timestamps but not its logical slot; promote() makes it writable."""
    primary = harness.Postgres()
    standby = None
    try:
        primary.start()
        db = primary.create_database("t_standby")
        db.execute("CREATE TABLE t (x int)")
        db.query("SELECT pg_create_logical_replication_slot('relay_sb', 'wal2json')")
        standby = primary.standby()
        assert standby.is_in_recovery() and standby.port != primary.port
        assert standby.primary is primary
        db.execute("INSERT INTO t SELECT generate_series(1, 100)")
        standby.wait_replayed()
        assert standby.query("SELECT count(*), bool_and(pg_xact_commit_timestamp(xmin) IS NOT NULL) FROM t",
                             dbname="t_standby") == [(100, True)]
        assert standby.query("SELECT count(*) FROM pg_replication_slots") == [(0,)]
        primary.stop()
        standby.promote()
        assert not standby.is_in_recovery() and standby.primary is None
        standby.execute("INSERT INTO t VALUES (101)", dbname="t_standby")
        assert standby.query("SELECT count(*) FROM t", dbname="t_standby") == [(101,)]
        sb_dir = standby.dir
        standby.cleanup()
        assert not os.path.exists(sb_dir)
    finally:
        if standby is not None:
            standby.cleanup()
        primary.cleanup()


def test_invalidate_slot_makes_an_inactive_slot_lost_and_restores_the_limit():
    server = harness.Postgres()
    try:
        server.start()
        server.query("SELECT pg_create_logical_replication_slot('relay_lost', 'wal2json')")
        server.invalidate_slot("relay_lost", timeout=60)
        assert server.query("SELECT wal_status FROM pg_replication_slots "
                            "WHERE slot_name = 'relay_lost'") == [("lost",)]
        # The limit was only set for the invalidation.
        harness.wait_for(lambda: server.query("SHOW max_slot_wal_keep_size") == [("-1",)], 10,
                         what="max_slot_wal_keep_size reset to -1")
        with pytest.raises(ValueError):
            server.invalidate_slot("no_such_slot")
    finally:
        server.cleanup()
