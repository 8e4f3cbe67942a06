# Bad inputs: a misconfigured server or broker, and awkward data; each is published, dead-lettered or refused clearly.
import json
import signal
import types
import uuid

import pytest

from harness import free_port, wait_for
from events import slot_lsns


def test_wal2json_not_allowed_by_output_plugin_libraries(outbox, pg):
    if not pg.query("SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries'"):
        return  # a server before 15.19 loads any plugin
    pg.execute("ALTER SYSTEM SET output_plugin_libraries = pgoutput")
    pg.execute("SELECT pg_reload_conf()")
    try:
        outbox.relay.start()
        assert outbox.relay.wait_exit(60) == 1
        assert "output_plugin_libraries" in outbox.relay.log()
    finally:
        pg.execute("ALTER SYSTEM RESET output_plugin_libraries")
        pg.execute("SELECT pg_reload_conf()")


def test_slot_dropped_while_running_stops_the_relay(outbox, kafka, pg):
    # slot_loss = "stop": the default "recover" recovers from the table (tests/test_recovery.py).
    outbox.reconfigure(extra_relay='slot_loss = "stop";')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    import relayctl
    relayctl.drop_active_slot(outbox.db, outbox.slot)
    # With slot_loss = "stop", the relay's checkpoint without its slot: a loud refusal.
    assert outbox.relay.wait_exit(60) == 1
    assert "does not exist (dropped, or lost in a failover), but this relay's checkpoint" in outbox.relay.log()


def test_broker_unreachable_at_start_is_retried_and_logged(outbox):
    outbox.reconfigure(extra_kafka='socket_timeout_ms = 2000;')
    conf = open(outbox.config_path).read()
    import re
    conf = re.sub(r'bootstrap_servers = "[^"]*"', 'bootstrap_servers = "127.0.0.1:%d"' % free_port(), conf)
    open(outbox.config_path, "w").write(conf)
    outbox.relay.start()
    outbox.relay.wait_log("Connection refused", timeout=60)
    assert outbox.relay.proc.poll() is None
    assert outbox.relay.stop(signal.SIGTERM) == 0


def test_awkward_data_is_published(outbox, kafka):
    cols = ", ".join("c%d text DEFAULT ''" % i for i in range(1, 1590))
    outbox.db.execute("CREATE TABLE public.wide (id uuid DEFAULT gen_random_uuid(), k text, v text, "
                      "bin bytea, %s)" % cols)
    outbox.reconfigure(sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                               '{ table = "public.wide"; topic = "%s.wide"; key = "k"; value = "v"; '
                               'event_type = "k"; headers = [ "bin" ]; headers_column = ""; }'
                               % (outbox.prefix, outbox.prefix))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    deep = "[" * 5000 + "]" * 5000
    outbox.db.execute("SELECT outbox.publish('edge', '', '', %s::jsonb, '{\"\": \"\"}')", (deep,))
    outbox.db.execute("INSERT INTO public.wide (k, v, bin) VALUES ('row', '', '\\x00ff00'::bytea)")
    edge = kafka.consume([outbox.prefix + ".edge"], until=1, timeout=60)
    assert len(edge) == 1 and edge[0]["key"] == b"" and edge[0]["value"] == deep.replace("][", "], [").encode() or \
        json.loads(edge[0]["value"]) == json.loads(deep)
    wide = kafka.consume([outbox.prefix + ".wide"], until=1, timeout=60)
    assert len(wide) == 1 and wide[0]["value"] == b"" and dict(wide[0]["headers"])["bin"] == b"00ff00"


def test_wal_level_replica_is_named_by_the_relay_and_preflight(kafka, tmp_path):
    """A server with wal_level = replica: one line saying what to change, from both commands."""
    import harness
    import relayctl
    server = harness.Postgres(extra_settings={"wal_level": "replica"})
    try:
        server.start()
        db = server.create_database("t_wal_level_replica")
        relayctl.install_outbox(db)
        conf = str(tmp_path / "relay.conf")
        relayctl.write_config(conf, db.dsn, kafka.bootstrap, "relay_replica", "t_replica.${aggregate_type}")
        code, out = relayctl.run_once(["preflight", conf], timeout=60)
        assert code != 0, out
        lines = [l for l in out.splitlines() if l.startswith("FAIL")]
        assert len(lines) == 1 and "wal_level = replica" in lines[0], out
        assert "set wal_level = logical in postgresql.conf and restart PostgreSQL" in lines[0]
        code, lines = relayctl.run_to_exit(conf, str(tmp_path))
        assert code == 1 and len(lines) == 1, lines
        assert "wal_level is 'replica'" in lines[0] and "set wal_level = logical" in lines[0]
        assert not server.query("SELECT 1 FROM pg_replication_slots")  # nothing created
    finally:
        server.cleanup()


def vm_kib(pid, field):
    """A VmRSS/VmHWM-style line of /proc/PID/status, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


BIG = 50 * 1024 * 1024


def big_row_peak(outbox, kafka, topic_config=None, extra_kafka=""):
    """Starts the relay, writes a 50 MiB row and a small one after it; returns (dead letters,
    records of the event topic, idle RSS KiB, peak RSS KiB, RSS KiB after the small row)."""
    dlq = outbox.prefix + ".dlq"
    if topic_config:
        kafka.create_topic(outbox.topic("big"), partitions=1, config=topic_config)
    outbox.reconfigure(extra_relay='dead_letter_topic = "%s";' % dlq, extra_kafka=extra_kafka)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    pid = outbox.relay.proc.pid
    idle_kib = vm_kib(pid, "VmRSS")
    payload = '{"blob": "%s"}' % ("x" * BIG)
    outbox.db.execute("SELECT outbox.publish('big', 'k-big', 'Huge', %s::jsonb)", (payload,))
    outbox.db.execute("SELECT outbox.publish('big', 'k-next', 'Small', '{\"n\": 1}')")
    want = 1 if topic_config else 0
    dead = kafka.consume([dlq], until=1 - want, timeout=120) if not want else []
    recs = kafka.consume([outbox.topic("big")], until=1 + want, timeout=180)
    peak_kib = vm_kib(pid, "VmHWM")
    after_kib = vm_kib(pid, "VmRSS")
    print("\nrelay RSS: idle %d MiB, peak with a 50 MiB row %d MiB, after it %d MiB (%s)" % (
        idle_kib // 1024, peak_kib // 1024, after_kib // 1024, "published" if want else "dead-lettered"))
    assert outbox.relay.stop() == 0
    return dead, recs, peak_kib


def test_50_mb_payload_is_dead_lettered_as_too_large_with_bounded_memory(outbox, kafka):
    """A 50 MiB row under Kafka's default 1 MB limit: a dead letter (cut to 64 KiB) saying the
    message is too large, the next row published, and the relay's peak RSS a small multiple of
    the row: libpq's input buffer, its copy of the message, the decoded value."""
    dead, recs, peak_kib = big_row_peak(outbox, kafka)
    assert len(dead) == 1
    h = dict(dead[0]["headers"])
    assert b"too large" in h["dlq_reason"].lower(), h
    assert dead[0]["key"] == b"k-big" and len(dead[0]["value"]) == 65536
    assert int(h["dlq_truncated_from"]) > BIG
    assert [m["key"] for m in recs] == [b"k-next"]
    assert peak_kib * 1024 < 4 * BIG + 40 * 1024 * 1024, peak_kib


def test_50_mb_payload_is_published_when_kafka_allows_it(outbox, kafka):
    """With the topic's max.message.bytes and the relay's message_max_bytes raised, the 50 MiB
    row is published whole; librdkafka's copy of the value adds one more row's worth of memory."""
    limit = 64 * 1024 * 1024
    dead, recs, peak_kib = big_row_peak(outbox, kafka, topic_config={"max.message.bytes": str(limit)},
                                        extra_kafka="message_max_bytes = %d;" % limit)
    assert [m["key"] for m in recs] == [b"k-big", b"k-next"]
    assert json.loads(recs[0]["value"]) == {"blob": "x" * BIG}
    assert peak_kib * 1024 < 5 * BIG + 40 * 1024 * 1024, peak_kib


@pytest.fixture
def ascii_outbox(pg, kafka, tmp_path, request):
    """An outbox in a SQL_ASCII database (it stores any bytes in text) with its own dead-letter topic."""
    import relayctl
    db = pg.create_database("t_sql_ascii_" + uuid.uuid4().hex[:8], encoding="SQL_ASCII")
    o = types.SimpleNamespace(db=db, prefix="t" + uuid.uuid4().hex[:10], slot="relay_" + uuid.uuid4().hex[:10])
    o.dlq = o.prefix + ".dlq"
    o.config_path = str(tmp_path / "relay.conf")
    relayctl.install_outbox(db)
    relayctl.write_config(o.config_path, db.dsn, kafka.bootstrap, o.slot, o.prefix + ".${aggregate_type}",
                          extra_relay='dead_letter_topic = "%s";' % o.dlq)
    o.relay = relayctl.Relay(o.config_path, str(tmp_path))
    yield o
    relayctl.end_of_test(o.relay, request)
    pg.drop_database(db.name)


def test_invalid_utf8_in_text_is_dead_lettered_never_published(ascii_outbox, kafka):
    """SQL_ASCII lets text hold bytes that are not UTF-8; wal2json passes them through. Such a row
    is dead-lettered (the record byte for byte, reason naming the column), the rows around it
    are published, and nothing broken reaches the event topic."""
    o = ascii_outbox
    o.relay.start()
    o.relay.wait_streaming()
    conn = o.db.connect()
    cur = conn.cursor()
    cur.execute("SELECT outbox.publish('u', 'k-1', 'T', '{\"ok\": 1}')")
    cur.execute("SELECT outbox.publish('u', 'k-2', 'T', ('{\"name\": \"caf' || "
                "convert_from('\\xe9'::bytea, 'SQL_ASCII') || '\"}')::jsonb)")  # Latin-1 é
    cur.execute("SELECT outbox.publish('u', 'k-' || convert_from('\\xff'::bytea, 'SQL_ASCII'), 'T', '{}')")
    cur.execute("SELECT outbox.publish('u', 'k-3', 'T', ('{\"name\": \"caf' || "
                "convert_from('\\xc3a9'::bytea, 'SQL_ASCII') || '\"}')::jsonb)")  # UTF-8 é
    conn.close()
    good = kafka.consume([o.prefix + ".u"], until=2, timeout=60)
    good.sort(key=lambda m: m["key"])  # two keys, maybe two partitions: no order between them
    assert [m["key"] for m in good] == [b"k-1", b"k-3"]
    assert json.loads(good[1]["value"]) == {"name": "caf\u00e9"}
    dead = kafka.consume([o.dlq], until=2, timeout=60)
    # The row with the bad key has no key in its dead letter (partitions keep no order between them).
    dead.sort(key=lambda m: m["key"] is None)
    assert [m["key"] for m in dead] == [b"k-2", None]
    reasons = [dict(m["headers"])["dlq_reason"].decode() for m in dead]
    assert reasons[0] == "invalid UTF-8 in column payload (byte 16 of its text)", reasons
    assert reasons[1] == "invalid UTF-8 in column aggregate_id (byte 2 of its text)", reasons
    assert b"caf\xe9" in dead[0]["value"]  # the record as it came, for the operator to see
    assert dict(dead[0]["headers"])["dlq_topic"] == (o.prefix + ".u").encode()
    assert o.relay.proc.poll() is None
    assert o.relay.stop() == 0
    assert "invalid UTF-8 in column payload" in o.relay.log()
