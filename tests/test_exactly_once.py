# Exactly-once tests: kill -9 loops, restarts of every part, split transactions, two relays on one slot.
import json
import os
import random
import signal
import socket
import struct
import threading
import time

import pytest

import relayctl
from harness import wait_for
from events import Writers, assert_exactly_once_in_order, consume_events, slot_lsns, write_events

CRASHES = int(os.environ.get("CRASH_LOOPS", "50"))


def transactional_id(outbox):
    sysid = outbox.db.query("SELECT system_identifier FROM pg_control_system()")[0][0]
    return "outbox-relay-%s-%s" % (sysid, outbox.slot)


def checkpoint_lsn(kafka, txn_id, outbox=None, topic=None):
    """The newest committed checkpoint's LSN for this relay (0 when there is none).

    With outbox, asks the relay itself (`outbox-relay status --json`), which reads the checkpoint
    topic to its high watermark and says so when it could not; a plain consumer that times out
    under load would return an older checkpoint without noticing.
    """
    if outbox is not None:
        st = relayctl.newest_status(outbox.config_path)
        if not st.get("checkpoint_lsn"):
            return 0, None
        hi, lo = st["checkpoint_lsn"].split("/")
        return (int(hi, 16) << 32) | int(lo, 16), st
    last = None
    for m in kafka.consume([topic], timeout=30):
        if m["key"] == txn_id.encode():
            last = json.loads(m["value"])
    if last is None:
        return 0, None
    hi, lo = last["lsn"].split("/")
    return (int(hi, 16) << 32) | int(lo, 16), last


def assert_exactly_once(kafka, outbox, writers, timeout=240):
    """A read_committed consumer sees every committed row once, in order per key, no rolled-back row."""
    expected = writers.committed
    msgs = kafka.consume([outbox.topic("user")], until=len(expected), timeout=timeout)
    # Read to the end as well, to catch duplicates that come after the expected count.
    msgs = kafka.consume([outbox.topic("user")], timeout=60) if len(msgs) >= len(expected) else msgs
    seen, last = {}, {}
    dups = lost = 0
    for m in msgs:
        eid = dict(m["headers"])["event_id"].decode()
        assert eid not in writers.rolled_back, "event of a rolled-back transaction published"
        if eid in seen:
            dups += 1
            continue
        seen[eid] = m
        key, s = expected[eid]
        assert m["key"] == key.encode()
        assert last.get(key, -1) < s, "key %s out of order" % key
        last[key] = s
    lost = len(set(expected) - set(seen))
    assert (dups, lost) == (0, 0), "%d duplicates, %d lost of %d" % (dups, lost, len(expected))
    return len(msgs)


def restart_until_streaming(relay, timeout=60):
    relay.start()
    relay.wait_streaming(timeout)


def test_kill_9_loop_under_load_is_exactly_once(outbox, kafka):
    txn_id = transactional_id(outbox)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    created_at, _ = slot_lsns(outbox.db, outbox.slot)  # nothing before it is the relay's
    writers = Writers(outbox.db, outbox).start()
    rnd = random.Random(42)
    try:
        for i in range(CRASHES):
            # A random moment: after a random number of further committed rows.
            target = writers.count() + rnd.randint(1, 400)
            wait_for(lambda: writers.count() >= target, 60, what="rows written")
            outbox.relay.proc.send_signal(signal.SIGKILL)
            outbox.relay.wait_exit(30)
            # The new relay's init_transactions ends the dead one's open transaction, which would
            # otherwise hold read_committed readers of the checkpoint topic for up to 60 s.
            restart_until_streaming(outbox.relay)
            # The slot never passes what Kafka committed: the slot is read first, the checkpoint
            # (which only grows) after it.
            confirmed, _ = slot_lsns(outbox.db, outbox.slot)
            cp = max(checkpoint_lsn(kafka, txn_id, outbox)[0], created_at)
            assert confirmed <= cp, "crash %d: slot at %x passed the checkpoint %x" % (i, confirmed, cp)
    finally:
        writers.stop()
    n = assert_exactly_once(kafka, outbox, writers)
    print("crash loop: %d kills, %d committed rows, %d rolled back, %d records read, 0 duplicates, 0 lost"
          % (CRASHES, len(writers.committed), len(writers.rolled_back), n))
    assert outbox.relay.stop() == 0


def lengthen_checkpoint_topic(kafka, topic, records, own_key):
    """Another producer's records after the relay's newest checkpoint: committed transactions of
    1,000 records of another key, then an aborted one holding a record of the relay's own key that
    points far ahead (read, it would skip every later event)."""
    producer = kafka.producer({"transactional.id": "test-long-topic-" + os.urandom(4).hex(),
                               "linger.ms": 50})
    producer.init_transactions(30)
    for start in range(0, records, 1000):
        producer.begin_transaction()
        for i in range(start, min(start + 1000, records)):
            producer.produce(topic, key=b"test-other-relay", value=b'{"version":1,"lsn":"0/%X"}' % i)
        producer.commit_transaction(60)
    producer.begin_transaction()
    producer.produce(topic, key=own_key.encode(), value=b'{"version":1,"slot":"x","lsn":"FF/0"}')
    assert producer.flush(30) == 0
    producer.abort_transaction(30)


def test_a_restart_after_a_long_checkpoint_topic_resumes_from_its_newest_checkpoint(outbox, kafka):
    """The checkpoint is read backwards in growing windows (the last 2,000 offsets, then 16,000,
    128,000, ...): with 30,000 records of another producer after the relay's newest checkpoint
    (and an aborted one of its own key after those) the third window finds it, and the relay
    publishes every event once. A restart right after its own commits finds it in the first."""
    relay = outbox.relay
    relay.start()
    relay.wait_streaming()
    rows = write_events(outbox.db, 10, 3)
    assert len(consume_events(kafka, outbox, 30)) == 30  # their checkpoint is committed with them
    relay.proc.send_signal(signal.SIGKILL)
    relay.wait_exit(30)
    lengthen_checkpoint_topic(kafka, relayctl.checkpoint_topic(outbox.slot), 30000,
                              transactional_id(outbox))
    since = len(relay.log())
    restart_until_streaming(relay)
    logged = relay.log()[since:]
    assert "not among the last 2000 offsets" in logged and "not among the last 16000 offsets" in logged, logged[-3000:]
    assert "not among the last 128000 offsets" not in logged and "no checkpoint for" not in logged, logged[-3000:]
    rows.update(write_events(outbox.db, 10, 3, start=30))
    assert len(consume_events(kafka, outbox, 60)) >= 60
    relay.proc.send_signal(signal.SIGKILL)
    relay.wait_exit(30)
    since = len(relay.log())
    restart_until_streaming(relay)
    assert "not among the last" not in relay.log()[since:], relay.log()[since:][-3000:]
    rows.update(write_events(outbox.db, 10, 3, start=60))
    msgs = consume_events(kafka, outbox, 90)
    msgs = consume_events(kafka, outbox, None, timeout=60) if len(msgs) >= 90 else msgs
    assert_exactly_once_in_order(msgs, rows, outbox)
    assert relay.stop() == 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load_is_exactly_once(outbox, kafka, pg, mode):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox).start()
    try:
        wait_for(lambda: writers.count() >= 500, 60, what="rows written")
        writers.stop()  # the writers' connections die with the server
        pg.restart(mode=mode)
        writers = Writers(outbox.db, outbox, count=2, gen=1)
        writers.start()
        wait_for(lambda: writers.count() >= 500, 60, what="rows written after the restart")
    finally:
        writers.stop()
    # Both writer generations: merge what the first one committed.
    assert_exactly_once(kafka, outbox, writers_all(outbox))
    assert outbox.relay.proc.poll() is None


def test_fast_postgres_stop_while_the_relay_holds_a_kafka_transaction(outbox, kafka, pg):
    """A fast stop ends once the relay confirms the end of WAL, also when the relay comes to its
    last rows behind (committed over 200 ms before: it gathers input) with their Kafka transaction
    still open. The stopping walsender answers each status update with a new keepalive, so the
    input never runs dry: those keepalives once kept the relay gathering forever, its Kafka
    transaction never committed, and the stop waited out pg_ctl's timeout. (Here that hang ends
    by chance when a keepalive comes a millisecond late; the keepalive flood test below pins it.)"""
    def shutting_down():
        with open(pg.log_path, errors="replace") as f:
            f.seek(log_start)
            return "LOG:  shutting down" in f.read()

    outbox.relay.start()
    outbox.relay.wait_streaming()
    publish_rows(outbox.db, 10, 0)
    kafka.consume([outbox.topic("user")], until=10, timeout=60)  # the topic exists; all committed
    log_start = os.path.getsize(pg.log_path)
    stopped = []
    stopper = threading.Thread(target=lambda: stopped.append(pg.stop("fast", timeout=20)))
    outbox.relay.proc.send_signal(signal.SIGSTOP)
    try:
        publish_rows(outbox.db, 20, 100)
        committed = time.monotonic()
        stopper.start()
        # The checkpointer tells the walsender to stop; once it has sent all WAL it only waits
        # for the relay's confirmation (the shutdown checkpoint waits for it to exit).
        wait_for(shutting_down, 30, what="the shutdown to begin")
        told = time.monotonic()
        # Read more than 200 ms after their commit, the rows are a backlog: the relay gathers.
        wait_for(lambda: time.monotonic() >= max(committed + 0.5, told + 0.2), 5,
                 what="the walsender to wait and the rows to be 0.5 s old")
    finally:
        outbox.relay.proc.send_signal(signal.SIGCONT)
    stopper.join()
    assert stopped == [True], "the fast stop waited for the relay:\n" + outbox.relay.log()[-3000:]
    pg.start()
    assert_exactly_once(kafka, outbox, writers_all(outbox))
    assert outbox.relay.proc.poll() is None
    assert outbox.relay.stop() == 0


class KeepaliveFlood:
    """A TCP proxy in front of PostgreSQL that, while flooding is set, fills each replication
    stream (after CopyBothResponse) with keepalives between the server's own messages: a
    stopping server sends one per status update; this sends them faster than the relay reads,
    so the relay never finds its input idle."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.flooding = threading.Event()
        self.flowing = threading.Event()  # keepalives went out since flooding was set
        self.records = 0  # XLogData messages passed on to a relay
        self.conns = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def dsn(self, dbname):
        return "host=127.0.0.1 port=%d dbname=%s user=postgres sslmode=disable gssencmode=disable" % (
            self.port, dbname)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            # Megabytes queued towards the relay: a pause of this thread leaves it input.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            c = {"client": client, "server": socket.create_connection(("127.0.0.1", self.target_port)),
                 "lock": threading.Lock(), "streaming": False, "wal_end": 0, "closed": False}
            self.conns.append(c)
            for run in (self._up, self._down, self._flood):
                threading.Thread(target=run, args=(c,), daemon=True).start()

    def _close(self, c):
        c["closed"] = True
        for sock in (c["client"], c["server"]):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _up(self, c):
        try:
            while True:
                data = c["client"].recv(65536)
                if not data:
                    break
                c["server"].sendall(data)
        except OSError:
            pass
        self._close(c)

    def _down(self, c):
        """Server to relay, one whole message at a time (keepalives go only between them)."""
        buf = b""
        try:
            while True:
                data = c["server"].recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 5 and len(buf) >= 1 + struct.unpack("!I", buf[1:5])[0]:
                    n = 1 + struct.unpack("!I", buf[1:5])[0]
                    msg, buf = buf[:n], buf[n:]
                    kind = msg[5:6] if msg[:1] == b"d" else b""
                    if msg[:1] == b"W":
                        c["streaming"] = True
                    elif msg[:1] != b"d":
                        c["streaming"] = False  # the copy ended
                    elif kind == b"w":
                        c["wal_end"] = max(c["wal_end"], struct.unpack("!Q", msg[14:22])[0])
                    elif kind == b"k":
                        c["wal_end"] = max(c["wal_end"], struct.unpack("!Q", msg[6:14])[0])
                    with c["lock"]:
                        c["client"].sendall(msg)
                    if kind == b"w":
                        self.records += 1
        except OSError:
            pass
        self._close(c)

    def _flood(self, c):
        try:
            while not c["closed"]:
                if not (self.flooding.is_set() and c["streaming"]):
                    time.sleep(0.01)
                    continue
                keepalive = b"d" + struct.pack("!IcQQc", 22, b"k", c["wal_end"], 0, b"\0")
                with c["lock"]:
                    c["client"].sendall(keepalive * 32768)
                self.flowing.set()
        except OSError:
            pass

    def close(self):
        self.flooding.clear()
        self.listener.close()
        for c in self.conns:
            self._close(c)


def publish_rows(db, n, first_seq):
    """One transaction of n outbox rows: keys k0..k9, payload seq first_seq.. (increasing per key)."""
    db.execute("SELECT outbox.publish('user', 'k' || (i %% 10), 'Changed', jsonb_build_object('seq', i)) "
               "FROM generate_series(%s, %s) i", (first_seq, first_seq + n - 1))


def test_keepalives_alone_do_not_keep_a_kafka_transaction_open(outbox, kafka, pg):
    """Rows read as a backlog (committed over 200 ms before: the relay gathers input), then only
    keepalives: the Kafka transaction holding the rows still commits by its age. Counted as
    input, the keepalives once kept the relay reading on forever without committing (a stopping
    server's keepalives kept its fast stop waiting for the slot to be confirmed)."""
    proxy = KeepaliveFlood(pg.port)
    try:
        relayctl.write_config(outbox.config_path, proxy.dsn(outbox.db.name), kafka.bootstrap,
                              outbox.slot, outbox.prefix + ".${aggregate_type}")
        outbox.relay.start()
        outbox.relay.wait_streaming()
        publish_rows(outbox.db, 10, 0)
        assert len(kafka.consume([outbox.topic("user")], until=10, timeout=60)) == 10
        outbox.relay.proc.send_signal(signal.SIGSTOP)
        try:
            before = proxy.records
            publish_rows(outbox.db, 20, 100)
            committed = time.monotonic()
            _, rows_end = slot_lsns(outbox.db, outbox.slot)
            wait_for(lambda: proxy.records >= before + 22, 30, what="B, 20 rows and C sent to the relay")
            # Read more than 200 ms after their commit, the rows are a backlog: the relay gathers.
            wait_for(lambda: time.monotonic() - committed >= 0.5, 5, what="the rows to be 0.5 s old")
            proxy.flooding.set()
            wait_for(proxy.flowing.is_set, 10, what="keepalives after the rows")
        finally:
            outbox.relay.proc.send_signal(signal.SIGCONT)
        # Committed after relay.transaction_max_ms (100 ms), then confirmed: a few seconds at most.
        try:
            wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= rows_end, 8,
                     what="the slot confirmed past the rows (their Kafka transaction committed)")
        finally:
            proxy.flooding.clear()
        assert_exactly_once(kafka, outbox, writers_all(outbox))
        assert outbox.relay.stop() == 0
    finally:
        proxy.close()


def writers_all(outbox):
    """All committed events in the database (the table keeps them), as a Writers-like record."""
    class All:
        pass
    a = All()
    a.rolled_back = set()
    a.committed = {}
    for eid, key, payload in outbox.db.query("SELECT id::text, aggregate_id, payload FROM outbox.events"):
        a.committed[eid] = (key, payload["seq"])  # a key has one writer: its order is seq
    return a


def test_broker_restart_under_load_is_exactly_once(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox).start()
    try:
        wait_for(lambda: writers.count() >= 500, 60, what="rows written")
        kafka.stop()
        target = writers.count() + 500
        wait_for(lambda: writers.count() >= target, 60, what="rows written while Kafka is down")
        kafka.start()
        target = writers.count() + 500
        wait_for(lambda: writers.count() >= target, 60, what="rows written after Kafka is back")
    finally:
        writers.stop()
    assert_exactly_once(kafka, outbox, writers)


def test_a_kafka_outage_longer_than_the_transaction_timeout_starts_over_exactly_once(outbox, kafka):
    """The broker aborts a transaction left open longer than transaction.timeout.ms (10 s here)
    and bumps the producer's epoch; the producer's abort then fails for good (fenced, or in an
    invalid state, by which of the two comes first), though no other relay is there. The relay
    starts over with a new producer from its checkpoint instead of
    exiting 3 (which systemd does not restart), and every row arrives once."""
    outbox.reconfigure(extra_kafka="transaction_timeout_ms = 10000;")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox, count=2).start()
    try:
        wait_for(lambda: writers.count() >= 300, 60, what="rows written")
        since = len(outbox.relay.log())
        kafka.stop()
        try:
            # Its records time out (message.timeout.ms follows transaction.timeout.ms): by then
            # the open transaction is older than its timeout.
            wait_for(lambda: "Message timed out" in outbox.relay.log()[since:]
                     or outbox.relay.proc.poll() is not None, 90, what="the open transaction's records timing out")
        finally:
            kafka.start()
        # The broker's abort usually comes before the relay's own (it reconnects with a backoff);
        # when the relay's comes first, the abort succeeds and it reads again without starting over.
        wait_for(lambda: "streaming from slot" in outbox.relay.log()[since:]
                 or outbox.relay.proc.poll() is not None, 120, what="the relay streaming again")
        assert outbox.relay.proc.poll() is None, outbox.relay.log()[since:][-3000:]
        print("started over" if "starting over with a new producer" in outbox.relay.log()[since:]
              else "the relay's abort came first: no start over")
        target = writers.count() + 300
        wait_for(lambda: writers.count() >= target, 60, what="rows written after the start over")
    finally:
        writers.stop()
    assert_exactly_once(kafka, outbox, writers)
    assert outbox.relay.stop() == 0


def test_relay_killed_inside_a_500k_row_transaction(outbox, kafka):
    txn_id = transactional_id(outbox)
    # A small in-flight limit slows the catch-up down, so that the kill lands inside the
    # transaction: at full speed all 500,000 rows can be committed between two looks.
    outbox.reconfigure(extra_relay="max_in_flight_bytes = 65536;")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute(
        "INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'user', 'k' || (i % 100), 'Bulk', jsonb_build_object('w', 0, 'seq', i) "
        "FROM generate_series(1, 500000) i")
    # Kill it once Kafka holds part of the transaction (a partial checkpoint).
    wait_for(lambda: (checkpoint_lsn(kafka, txn_id, topic=relayctl.checkpoint_topic(outbox.slot))[1] or {}).get("partial"), 180,
             interval=0.5, what="a partial checkpoint")
    outbox.relay.proc.send_signal(signal.SIGKILL)
    outbox.relay.wait_exit(30)
    restart_until_streaming(outbox.relay)
    assert_exactly_once(kafka, outbox, writers_all(outbox), timeout=600)
    assert outbox.relay.stop() == 0


def test_second_relay_on_the_same_slot_fences_the_first(outbox, kafka):
    import relayctl
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox, count=2).start()
    second = relayctl.Relay(outbox.config_path, os.path.dirname(outbox.config_path))
    second.log_path = outbox.relay.log_path + ".second"
    try:
        wait_for(lambda: writers.count() >= 300, 60, what="rows written")
        second.start()
        # The newer relay fences the older one, which exits with a clear message.
        assert outbox.relay.wait_exit(90) == 3  # fenced
        assert "another relay with the same transactional.id took over" in outbox.relay.log()
        second.wait_streaming(90)
        target = writers.count() + 300
        wait_for(lambda: writers.count() >= target, 60, what="rows written after the takeover")
    finally:
        writers.stop()
    assert_exactly_once(kafka, outbox, writers)
    assert second.stop() == 0
    second.kill()


def test_rows_gathered_for_a_second_between_transactions_arrive_once_and_a_sigterm_stops_cleanly(
        outbox, kafka, pg):
    """relay.transaction_gather_ms = 1000 (its maximum), rows at a low rate: after each commit the
    stream is left unread up to a second. Meanwhile status updates must go on (the walsender's
    3 s wal_sender_timeout must not end the session), a SIGTERM must stop the relay cleanly at a
    transaction boundary, a SIGHUP must change the value, and every row arrives exactly once."""
    log_start = os.path.getsize(pg.log_path)
    pg.execute("ALTER SYSTEM SET wal_sender_timeout = '3s'")
    pg.execute("SELECT pg_reload_conf()")
    written = [0]
    done = threading.Event()

    def writer():
        while not done.is_set():
            publish_rows(outbox.db, 1, written[0])
            written[0] += 1
            done.wait(0.02)  # about 50 rows/s: far below the 1,000 rows a 1000 ms maximum aims at

    t = threading.Thread(target=writer)
    try:
        outbox.reconfigure(extra_relay="transaction_gather_ms = 1000;")
        outbox.relay.start()
        outbox.relay.wait_streaming()
        t.start()
        wait_for(lambda: written[0] >= 300, 60, what="300 rows written while the relay gathers")
        stop_began = time.monotonic()
        assert outbox.relay.stop(signal.SIGTERM) == 0
        assert time.monotonic() - stop_began < 15, "the stop waited (the gathering must not hold it)"
        assert "stopped; confirmed up to" in outbox.relay.log()
        at_stop = written[0]
        wait_for(lambda: written[0] >= at_stop + 50, 60, what="rows written while stopped")
        outbox.relay.start()
        outbox.relay.wait_streaming()
        wait_for(lambda: written[0] >= at_stop + 300, 60, what="more rows written while it gathers")
        outbox.reconfigure(extra_relay="transaction_gather_ms = 0;")
        outbox.relay.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload: relay.transaction_gather_ms changed" in outbox.relay.log(), 30,
                 what="the reload of relay.transaction_gather_ms")
    finally:
        done.set()
        if t.is_alive():
            t.join()
        pg.execute("ALTER SYSTEM RESET wal_sender_timeout")
        pg.execute("SELECT pg_reload_conf()")
    assert_exactly_once(kafka, outbox, writers_all(outbox))
    assert "replication connection lost" not in outbox.relay.log()
    with open(pg.log_path, errors="replace") as f:
        f.seek(log_start)
        assert "replication timeout" not in f.read()
    assert outbox.relay.stop() == 0
