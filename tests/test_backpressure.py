# Integration tests: relay.max_in_flight_bytes pauses the stream while Kafka does not keep up.
import json
import threading
import time

from harness import wait_for
from events import slot_lsns

LIMIT = 4 * 1024 * 1024
# What the relay may use beyond the limit while paused: the limit is counted with librdkafka's
# bookkeeping per record, but malloc keeps freed memory, libpq buffers what the socket held, and
# librdkafka keeps per-broker buffers while it reconnects.
OVERHEAD = 12 * 1024 * 1024
PAD = "x" * 1000


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def write_batch(db, first, count):
    """One transaction of count outbox rows of about 1 KB each, numbered from first."""
    db.execute(
        "INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'user', 'user-' || (i %% 50), 'Bulk', jsonb_build_object('seq', i, 'pad', %s) "
        "FROM generate_series(%s, %s) i", (PAD, first, first + count - 1))
    return first + count


def reply_time(db, slot):
    """When the walsender of slot last got a status update from the relay (None: no walsender)."""
    r = db.query("SELECT r.reply_time FROM pg_stat_replication r JOIN pg_replication_slots s "
                 "ON s.active_pid = r.pid WHERE s.slot_name = %s", (slot,))
    return r[0][0] if r else None


class Writer(threading.Thread):
    """Writes batches of rows until stopped: the application keeps going while Kafka is down."""

    def __init__(self, db, first, batch=500, pause=0.1):
        super().__init__(daemon=True)
        self.db, self.next, self.batch, self.pause = db, first, batch, pause
        self.done = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.done.is_set():
                self.next = write_batch(self.db, self.next, self.batch)
                self.done.wait(self.pause)  # paces the writer; stop() ends the wait at once
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.done.set()
        self.join(60)
        assert not self.is_alive() and self.error is None, self.error
        return self.next


def seqs_in_kafka(kafka, outbox, count, timeout):
    msgs = kafka.consume([outbox.topic("user")], until=count, timeout=timeout)
    return [json.loads(m["value"])["seq"] for m in msgs]


def test_at_least_once_outage_pauses_the_stream_with_bounded_memory(outbox, kafka, pg):
    # A short wal_sender_timeout: while paused, status updates must keep the session alive.
    pg.execute("ALTER SYSTEM SET wal_sender_timeout = '3s'")
    pg.execute("SELECT pg_reload_conf()")
    writer = None
    try:
        outbox.reconfigure(extra_relay='delivery = "at-least-once"; max_in_flight_bytes = %d;' % LIMIT)
        outbox.relay.start()
        outbox.relay.wait_streaming()
        first = write_batch(outbox.db, 0, 2000)
        assert len(seqs_in_kafka(kafka, outbox, 2000, 120)) == 2000
        wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= slot_lsns(outbox.db, outbox.slot)[1] - 1024,
                 30, what="slot caught up")
        pid = outbox.relay.proc.pid
        base = rss_bytes(pid)
        log_at = len(outbox.relay.log())
        kafka.stop()
        try:
            writer = Writer(outbox.db, first)
            writer.start()
            outbox.relay.wait_log("stream paused", timeout=60, since=log_at)
            # Read once paused: until then a keepalive with nothing in flight may confirm idle WAL
            # (autovacuum's, say) past the last row, which skips no row.
            held = slot_lsns(outbox.db, outbox.slot)[0]
            # Paused: well over the limit is written meanwhile (about 1.3 KB per record), the
            # relay stays up, its memory stays bounded, the slot stays, status updates go on.
            peak = base
            seen_reply = reply_time(outbox.db, outbox.slot)
            deadline = time.monotonic() + 60
            while writer.next - first < 40000 or time.monotonic() < deadline - 50:
                assert time.monotonic() < deadline, "writer too slow: %d rows" % (writer.next - first)
                assert outbox.relay.proc.poll() is None, outbox.relay.log()[-3000:]
                peak = max(peak, rss_bytes(pid))
                assert slot_lsns(outbox.db, outbox.slot)[0] <= held
                time.sleep(0.2)  # sampling the relay's RSS and the slot while Kafka is down
            wait_for(lambda: reply_time(outbox.db, outbox.slot) not in (None, seen_reply), 10,
                     what="a status update from the paused relay")
            last = writer.stop()
            writer = None
            peak = max(peak, rss_bytes(pid))
            print("RSS before %.1f MB, peak while paused %.1f MB, %d rows written while Kafka was down"
                  % (base / 2**20, peak / 2**20, last - first))
            assert peak <= base + LIMIT + OVERHEAD, "RSS %.1f MB, before %.1f MB" % (peak / 2**20, base / 2**20)
        finally:
            kafka.start()
        assert "replication connection lost" not in outbox.relay.log()[log_at:]
        # Kafka is back: everything arrives, and the slot follows.
        seqs = seqs_in_kafka(kafka, outbox, last, 240)
        assert set(seqs) == set(range(last)), "%d rows missing" % len(set(range(last)) - set(seqs))
        outbox.relay.wait_log("reading the stream again", timeout=30, since=log_at)
        end = outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0]
        wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= end - 1024, 60, what="slot advanced")
        assert outbox.relay.stop() == 0
    finally:
        if writer is not None:
            writer.done.set()
            writer.join(60)
        pg.execute("ALTER SYSTEM RESET wal_sender_timeout")
        pg.execute("SELECT pg_reload_conf()")


def test_exactly_once_catch_up_through_a_small_limit(outbox, kafka):
    # A backlog read through the smallest limit: the stream pauses and resumes many times,
    # inside large PostgreSQL transactions too, and every row arrives exactly once.
    outbox.reconfigure(extra_relay="max_in_flight_bytes = 65536; transaction_max_records = 3000;")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.relay.stop()
    n = 0
    for _ in range(4):
        n = write_batch(outbox.db, n, 5000)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    seqs = seqs_in_kafka(kafka, outbox, n, 240)
    assert sorted(seqs) == list(range(n))
    end = outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0]
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= end - 1024, 60, what="slot advanced")
    assert "pausing the stream" in outbox.relay.log()
    assert outbox.relay.stop() == 0


def test_at_least_once_a_dead_letter_waiting_for_kafka_holds_the_slot(outbox, kafka):
    """A non-transactional message becomes a dead letter outside any PostgreSQL transaction.
    Until Kafka acknowledges it, the server's keepalives (nothing else in flight) must not move
    the slot past it: a failed delivery reads it again from the slot."""
    dlq = outbox.prefix + ".dlq"
    prefix = "m" + outbox.prefix
    outbox.reconfigure(extra_relay='delivery = "at-least-once"; dead_letter_topic = "%s";' % dlq,
                       sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                               '{ message_prefix = "%s"; }' % (outbox.prefix, prefix))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute("SELECT pg_logical_emit_message(false, %s, '{}')", (prefix,))
    assert len(kafka.consume([dlq], until=1, timeout=60)) == 1  # the topic exists, Kafka is known
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= slot_lsns(outbox.db, outbox.slot)[1] - 1024,
             30, what="slot caught up")
    mark = len(outbox.relay.log())
    kafka.stop()
    try:
        # The end of the message's WAL record: a slot confirmed there would not send it again.
        at = int(outbox.db.query("SELECT pg_logical_emit_message(false, %s, '{}') - '0/0'", (prefix,))[0][0])
        outbox.relay.wait_log("dead-lettering the row of message", timeout=30, since=mark)
        seen = reply_time(outbox.db, outbox.slot)
        for _ in range(3):  # status updates go on, every second, after the server's keepalive
            wait_for(lambda: reply_time(outbox.db, outbox.slot) not in (None, seen), 15,
                     what="a status update while Kafka is down")
            seen = reply_time(outbox.db, outbox.slot)
            assert slot_lsns(outbox.db, outbox.slot)[0] < at, \
                "slot confirmed past a dead letter Kafka has not acknowledged"
    finally:
        kafka.start()
    assert len(kafka.consume([dlq], until=2, timeout=120)) == 2
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] > at, 60, what="slot past the dead letter")
    assert outbox.relay.stop() == 0
