# Smoke tests of the test harness: wal2json decoding in PostgreSQL and transactions in Kafka.
import json
import uuid


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
