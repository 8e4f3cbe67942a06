# Backfill tests: the rows a new slot cannot deliver, published from the outbox table exactly once.
import json

import pytest

import harness
import relayctl
from events import AGGREGATES, assert_exactly_once_in_order, write_events
from harness import wait_for
from test_metrics import P, scrape



@pytest.fixture(autouse=True)
def commit_timestamps(pg):
    """Slot-loss recovery reads commit times: the session server must record them."""
    if pg.query("SHOW track_commit_timestamp")[0][0] != "on":
        pg.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        pg.restart()


def all_events(kafka, outbox, count, timeout=90):
    """Every record of the outbox topics once count arrived (then to the end, for duplicates)."""
    topics = [outbox.topic(a) for a in AGGREGATES]
    kafka.consume(topics, until=count, timeout=timeout)
    return kafka.consume(topics, until=None, timeout=timeout)


def status(outbox, whole=True):
    """outbox-relay status --json: read to the checkpoint topic's end (whole), or one answer."""
    if whole:
        return relayctl.newest_status(outbox.config_path)
    code, out = relayctl.run_once(["status", outbox.config_path, "--json"], timeout=60)
    assert code == 0, out
    return json.loads(out)


def txn_id(outbox):
    sysid = outbox.db.query("SELECT system_identifier::text FROM pg_control_system()")[0][0]
    return "outbox-relay-%s-%s" % (sysid, outbox.slot)


def test_kill_during_the_backfill_resumes_after_the_last_committed_row(outbox, kafka):
    rows = write_events(outbox.db, 400, 50, keys=97)  # 20,000 events before the first start
    outbox.reconfigure(extra_relay="transaction_max_records = 200;")
    outbox.relay.start()

    def midway():
        b = status(outbox, whole=False).get("backfill") or {}  # an older checkpoint is as good
        return not b.get("done", True) and b.get("rows", 0) >= 2000
    wait_for(midway, 90, interval=0.05, what="a backfill under way")
    outbox.relay.kill()
    assert "backfill done" not in outbox.relay.log(), "the backfill ended before the kill"
    rows.update(write_events(outbox.db, 10, 5, keys=97, start=100000))
    outbox.relay.start()
    outbox.relay.wait_log("backfill done: 20000 events (first start)", timeout=120)
    assert "resuming the backfill (first start) after" in outbox.relay.log()
    outbox.relay.wait_streaming(timeout=60)
    assert_exactly_once_in_order(all_events(kafka, outbox, len(rows)), rows, outbox)


def test_a_running_backfill_shows_in_the_backfilling_gauge_while_not_ready(outbox, kafka):
    rows = write_events(outbox.db, 400, 50, keys=97)  # 20,000 events before the first start
    port = harness.free_port()
    outbox.reconfigure(extra_relay='transaction_max_records = 200; metrics_listen = ":%d";' % port)
    outbox.relay.start()

    def backfilling():
        try:
            s = scrape(port)
        except OSError:  # not listening yet
            return None
        return s if s.get(P + "backfilling") == 1 else None
    s = wait_for(backfilling, 90, interval=0.05, what="outbox_relay_backfilling 1")
    assert s.get(P + "ready") == 0 and s.get(P + "standby") == 0  # what OutboxRelayNotReady excludes
    outbox.relay.wait_log("backfill done: 20000 events (first start)", timeout=120)
    outbox.relay.wait_streaming(timeout=60)

    def streaming():
        s = scrape(port)
        return s.get(P + "backfilling") == 0 and s.get(P + "ready") == 1
    wait_for(streaming, 30, what="backfilling 0 and ready 1 after the backfill")
    assert scrape(port).get(P + "backfilled_rows_total") == len(rows)
    assert_exactly_once_in_order(all_events(kafka, outbox, len(rows)), rows, outbox)
    assert outbox.relay.stop() == 0


def test_a_start_that_died_creating_its_slot_starts_over(outbox, kafka):
    """The checkpoint says "creating" and a slot exists: it published nothing, so it is made again."""
    rows = write_events(outbox.db, 20, 3)
    outbox.db.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (outbox.slot,))
    rows.update(write_events(outbox.db, 5, 2, start=1000))
    checkpoints = relayctl.checkpoint_topic(outbox.slot)
    kafka.create_topic(checkpoints, partitions=1, config={"cleanup.policy": "compact"})
    p = kafka.producer()
    p.produce(checkpoints, key=txn_id(outbox),
              value=json.dumps({"version": 1, "slot": outbox.slot, "lsn": "0/0", "creating": True}))
    p.flush(30)
    outbox.relay.start()
    outbox.relay.wait_log("backfill done: 70 events (first start)", timeout=60)
    assert 'dropped replication slot "%s"' % outbox.slot in outbox.relay.log()
    assert_exactly_once_in_order(all_events(kafka, outbox, len(rows)), rows, outbox)


def test_a_slot_recreated_ahead_of_the_checkpoint_is_recovered(outbox, kafka):
    rows = write_events(outbox.db, 10, 2)
    outbox.relay.start()
    outbox.relay.wait_log("backfill done: 20 events (first start)", timeout=60)
    outbox.relay.wait_streaming(timeout=60)
    rows.update(write_events(outbox.db, 10, 2, start=1000))
    all_events(kafka, outbox, len(rows))
    assert outbox.relay.stop() == 0
    outbox.db.execute("SELECT pg_drop_replication_slot(%s)", (outbox.slot,))
    rows.update(write_events(outbox.db, 10, 2, start=2000))
    # Someone makes the slot again: it starts after the rows above, which it cannot deliver. The
    # relay drops it and makes its own, so the rows written meanwhile are backfilled too.
    outbox.db.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (outbox.slot,))
    rows.update(write_events(outbox.db, 10, 2, start=3000))
    since = len(outbox.relay.log())
    outbox.relay.start()
    outbox.relay.wait_log("backfill done: 40 events (slot lost)", timeout=60, since=since)
    assert "is ahead of the checkpoint" in outbox.relay.log()[since:]
    outbox.relay.wait_streaming(timeout=60)
    rows.update(write_events(outbox.db, 10, 2, start=4000))
    assert_exactly_once_in_order(all_events(kafka, outbox, len(rows)), rows, outbox)
    st = status(outbox)
    assert st["backfill"] == {"reason": "slot lost", "done": True, "rows": 40}
    assert st["slot_loss_recovery"] == "possible"


PAYLOADS = [
    '{"n": 12345678901234567890.123456789, "f": 1.5e300, "neg": -0.0}',
    '{"s": "caf\u00e9 \\\\ \\" \\n \\t \\u0001 \u2028 \\ud83d\\ude00 \U0001F600"}',
    '{"nested": {"a": [1, 2, {"b": null}], "t": true, "f": false}}',
    '[]',
    '"just a string"',
    '{"deep": ' + '[' * 200 + ']' * 200 + '}',
]


def test_backfilled_records_equal_streamed_ones_byte_for_byte(outbox, kafka):
    """The backfill reads each row back as a wal2json insert would print it: the same key, value,
    headers and timestamp source as the stream's record of an identical row."""
    def write(tag):
        conn = outbox.db.connect(autocommit=False)
        cur = conn.cursor()
        for i, p in enumerate(PAYLOADS):
            cur.execute("SELECT outbox.publish('shape', %s, 'T', %s::jsonb, %s::jsonb)",
                        ("k-%d" % i, p, json.dumps({"tag": "x", "i": i, "u": "\u00e9\\\"", "n": 1.50})))
        conn.commit()
        conn.close()
        return tag
    write("before")
    outbox.relay.start()
    outbox.relay.wait_log("backfill done: %d events (first start)" % len(PAYLOADS), timeout=60)
    outbox.relay.wait_streaming(timeout=60)
    write("after")
    msgs = kafka.consume([outbox.topic("shape")], until=2 * len(PAYLOADS), timeout=60)
    by_key = {}
    for m in msgs:
        # A backfilled row has no transaction context (pg_* headers): it was read from the table.
        headers = [(k, v) for k, v in m["headers"] if k != "event_id" and not k.startswith("pg_")]
        by_key.setdefault(m["key"], []).append((m["value"], headers))
    assert len(by_key) == len(PAYLOADS)
    for key, (backfilled, streamed) in by_key.items():
        assert backfilled == streamed, key
