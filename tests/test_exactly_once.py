# Exactly-once tests: kill -9 loops, restarts of every part, split transactions, two relays on one slot.
import json
import os
import random
import signal
import threading

import pytest

import relayctl
from harness import wait_for
from events import slot_lsns

CHECKPOINT_TOPIC = "outbox-relay.checkpoints"
CRASHES = int(os.environ.get("CRASH_LOOPS", "50"))


class Writers:
    """Several writer threads committing (and sometimes rolling back) outbox transactions.

    Each writer owns its keys, so the commit order of a key is its writer's order. committed
    maps event id -> (key, sequence); rolled_back holds ids of events that must never appear.
    """

    def __init__(self, db, outbox, count=3, max_rows=8, gen=0):
        self.db, self.outbox, self.gen = db, outbox, gen
        self.committed, self.rolled_back = {}, set()
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(w, max_rows)) for w in range(count)]

    def write_transaction(self, conn, rnd, w, max_rows, seq):
        """Writes one transaction of 1..max_rows events, rolled back one time in ten, and notes
        its ids as committed or rolled back; returns the next sequence number."""
        cur = conn.cursor()
        ids = []
        for _ in range(rnd.randint(1, max_rows)):
            key = "g%d-w%d-k%d" % (self.gen, w, rnd.randint(0, 9))
            cur.execute("SELECT outbox.publish('user', %s, 'Changed', %s::jsonb)",
                        (key, json.dumps({"g": self.gen, "w": w, "seq": seq})))
            ids.append((cur.fetchone()[0], key, seq))
            seq += 1
        if rnd.random() < 0.1:
            conn.rollback()
            with self.lock:
                self.rolled_back.update(i for i, _, _ in ids)
        else:
            conn.commit()
            with self.lock:
                for i, key, s in ids:
                    self.committed[i] = (key, s)
        return seq

    def _run(self, w, max_rows):
        rnd = random.Random(w)
        conn = self.db.connect(autocommit=False)
        seq = 0
        try:
            while not self.stop_flag.is_set():
                seq = self.write_transaction(conn, rnd, w, max_rows, seq)
        except Exception as e:  # reported by stop()
            self.errors.append(e)
        finally:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.committed)

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()
        assert not self.errors, self.errors


def transactional_id(outbox):
    sysid = outbox.db.query("SELECT system_identifier FROM pg_control_system()")[0][0]
    return "outbox-relay-%s-%s" % (sysid, outbox.slot)


def checkpoint_lsn(kafka, txn_id, outbox=None):
    """The newest committed checkpoint's LSN for this relay (0 when there is none).

    With outbox, asks the relay itself (`outbox-relay status --json`), which reads the checkpoint
    topic to its high watermark and says so when it could not; a plain consumer that times out
    under load would return an older checkpoint without noticing.
    """
    if outbox is not None:
        def read():
            code, out = relayctl.run_once(["status", outbox.config_path, "--json"], timeout=120)
            st = json.loads(out) if code == 0 else {}
            return st if code == 0 and "checkpoint_error" not in st else None
        st = wait_for(read, 180, interval=1, what="the checkpoint from outbox-relay status")
        if not st.get("checkpoint_lsn"):
            return 0, None
        hi, lo = st["checkpoint_lsn"].split("/")
        return (int(hi, 16) << 32) | int(lo, 16), st
    last = None
    for m in kafka.consume([CHECKPOINT_TOPIC], timeout=30):
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
    wait_for(lambda: (checkpoint_lsn(kafka, txn_id)[1] or {}).get("partial"), 180,
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
