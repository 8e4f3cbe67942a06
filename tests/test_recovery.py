# Recovery from the outbox table (issue 18): the first start publishes the rows committed before the
# slot existed, and a lost slot (dropped, lost in a failover, invalidated) is recovered exactly once.
"""Spec of the relay's first start and slot-loss recovery, each test ending with a read_committed
consumer check: every committed event exactly once, in per-key order, no rolled-back event.

Config keys (relay group): first_start = "backfill" (default) | "from-now"; slot_loss = "recover"
(default) | "stop"; recovery_window_ms (1000); capture_on_slot_loss = "stop" | "resnapshot".
Log lines: "backfill done: N events (first start)" and "backfill done: N events (slot lost)".
Recovery refuses (exit 1, one error line) when it cannot be exact: track_commit_timestamp off
(named), a message_prefix source (outbox.emit() leaves no row: named "emit").
"""
import json
import re
import signal
import uuid

import pytest

import harness
import relayctl
from harness import wait_for
from events import Writers

PHASE = 10 ** 7  # first_seq step: writers of a later phase continue the same keys' order
BACKFILL_DONE = re.compile(r"backfill done: (\d+) events \((first start|slot lost)\)")


class Target:
    """A database with the outbox kit, on any harness server, and one relay configured for it
    (like conftest's outbox fixture, which only serves the session server). point_at() moves the
    relay to another server's copy of the database (a promoted standby): same slot name, same
    topics, same explicit transactional.id."""

    def __init__(self, db, kafka, tmp_path, txn_id=None):
        self.db, self.kafka = db, kafka
        self.slot = "relay_" + uuid.uuid4().hex[:10]
        self.prefix = "t" + uuid.uuid4().hex[:10]
        self.txn_id = txn_id
        self.config_path = str(tmp_path / "relay.conf")
        self.extra_relay = ""
        self.relay = relayctl.Relay(self.config_path, str(tmp_path))
        self.reconfigure()

    def topic(self, aggregate_type):
        return "%s.%s" % (self.prefix, aggregate_type)

    def reconfigure(self, extra_relay=None, **extra):
        if extra_relay is not None:
            self.extra_relay = extra_relay
        if self.txn_id:
            extra["extra_kafka"] = 'transactional_id = "%s";' % self.txn_id + extra.get("extra_kafka", "")
        relayctl.write_config(self.config_path, self.db.dsn, self.kafka.bootstrap, self.slot,
                              self.prefix + ".${aggregate_type}", extra_relay=self.extra_relay, **extra)

    def point_at(self, db):
        self.db = db
        self.reconfigure()


@pytest.fixture
def target_on(kafka, tmp_path, request):
    """target_on(server, txn_id=None): a fresh database with the outbox kit on a server of the
    test's own, and its Target; the relay is killed afterwards (its log printed on failure)."""
    made = []

    def make(server, txn_id=None):
        db = server.create_database("t_" + uuid.uuid4().hex[:12])
        relayctl.install_outbox(db)
        t = Target(db, kafka, tmp_path, txn_id)
        made.append(t)
        return t

    yield make
    for t in made:
        relayctl.end_of_test(t.relay, request)


@pytest.fixture
def own_pg():
    """own_pg(**settings): a started PostgreSQL of the test's own (harness.Postgres with these
    postgresql.conf settings), for what must not touch the session server: slots invalidated,
    commit timestamps off. Removed afterwards."""
    made = []

    def make(**settings):
        s = harness.Postgres(extra_settings=settings)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.cleanup()


def slot_confirmed(db, slot):
    """The slot's confirmed_flush_lsn as a number (0 when there is no such slot)."""
    r = db.query("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    return int(r[0][0]) if r and r[0][0] is not None else 0


def wait_caught_up(db, slot, relay, timeout=60):
    """Waits until the relay confirmed the server's current WAL position on its slot: it confirms
    only what Kafka committed (and idle positions, once a second here), so every row committed
    before this call is in Kafka when it returns. Fails at once when the relay exits."""
    end = int(db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0])
    wait_for(lambda: relay.proc.poll() is not None or slot_confirmed(db, slot) >= end, timeout,
             what="the relay to confirm its slot up to the current WAL position")
    assert relay.proc.poll() is None, "relay exited (code %s):\n%s" % (relay.proc.returncode, relay.log()[-3000:])


def wait_checkpoint(db, slot, relay, timeout=60):
    """Waits until the relay confirms its slot further than now: it confirms only after a Kafka
    commit, so Kafka then holds a checkpoint of this slot (without one, a lost slot is a first
    start). Fails at once when the relay exits."""
    now = slot_confirmed(db, slot)
    wait_for(lambda: relay.proc.poll() is not None or slot_confirmed(db, slot) > now, timeout,
             what="the relay to confirm its slot past %x" % now)
    assert relay.proc.poll() is None, "relay exited (code %s):\n%s" % (relay.proc.returncode, relay.log()[-3000:])


def wait_rows(writers, more, timeout=60):
    """Waits until the writers committed `more` further rows."""
    target = writers.count() + more
    wait_for(lambda: writers.count() >= target, timeout, what="%d more rows committed" % more)


def table_events(db):
    """Every event in db's outbox.events (the table keeps them): {id: (key, seq)}. A Writers key
    belongs to one writer thread (of one gen), whose seq increases in commit order, also across
    phases (first_seq)."""
    return {eid: (key, payload["seq"])
            for eid, key, payload in db.query("SELECT id::text, aggregate_id, payload FROM outbox.events")}


def assert_published_once(kafka, topic, committed, rolled_back):
    """A read_committed consumer reads the topic to its end (call after wait_caught_up): every
    committed event once, in seq order per key, no rolled-back event. Returns the record count."""
    msgs = kafka.consume([topic], timeout=60)
    seen, last = set(), {}
    dups = foreign = 0
    for m in msgs:
        eid = dict(m["headers"])["event_id"].decode()
        assert eid not in rolled_back, "event %s of a rolled-back transaction published" % eid
        if eid in seen:
            dups += 1
            continue
        seen.add(eid)
        if eid not in committed:
            foreign += 1
            continue
        key, s = committed[eid]
        assert m["key"] == key.encode()
        assert last.get(key, -1) < s, "key %s out of order" % key
        last[key] = s
    lost = len(set(committed) - seen)
    assert (dups, lost, foreign) == (0, 0, 0), "%d duplicates, %d lost of %d committed, %d unknown" % (
        dups, lost, len(committed), foreign)
    return len(msgs)


def backfills(relay):
    """The relay's "backfill done" lines as [(count, reason)]."""
    return [(int(n), why) for n, why in BACKFILL_DONE.findall(relay.log())]


def wait_backfill(relay, reason, nth=1, timeout=60):
    """Waits for the nth "backfill done: N events (reason)" line; fails at once when the relay exits."""
    def done():
        return relay.proc.poll() is not None or len([b for b in backfills(relay) if b[1] == reason]) >= nth
    wait_for(done, timeout, what="backfill done (%s) #%d" % (reason, nth))
    got = [n for n, why in backfills(relay) if why == reason]
    assert len(got) >= nth, "relay exited (code %s) before backfill done (%s):\n%s" % (
        relay.proc.returncode, reason, relay.log()[-3000:])
    return got[nth - 1]


def drop_slot(db, slot, timeout=30, missing_ok=False):
    """Terminates the slot's walsender and drops the slot, again and again until the drop succeeds
    (the relay reconnects in between and makes it active again)."""
    if not missing_ok:
        assert db.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)), slot
    relayctl.drop_active_slot(db, slot, timeout)


def merged(*writers):
    """The committed and rolled-back events of several Writers."""
    committed, rolled_back = {}, set()
    for w in writers:
        committed.update(w.committed)
        rolled_back |= w.rolled_back
    return committed, rolled_back


def error_lines(relay):
    return [line for line in relay.log().splitlines() if " error " in line]


# ---------------------------------------------------------------------------------------------
# First start
# ---------------------------------------------------------------------------------------------

def test_first_start_publishes_events_committed_before_the_slot(outbox, kafka):
    """Writers publish for a while before the relay first starts and go on while it creates its
    slot and streams: the rows committed before the slot are published once, before the streamed
    ones of their key."""
    writers = Writers(outbox.db, outbox).start()
    try:
        wait_rows(writers, 12000)  # 1.5 to 2 s of three writers here
        outbox.relay.start()
        outbox.relay.wait_streaming()
        wait_rows(writers, 500)
    finally:
        writers.stop()
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    n = assert_published_once(kafka, outbox.topic("user"), writers.committed, writers.rolled_back)
    done = backfills(outbox.relay)
    assert len(done) == 1 and done[0][1] == "first start", done
    assert 0 < done[0][0] < len(writers.committed)
    print("first start: %d committed, %d rolled back, %d backfilled, %d records read"
          % (len(writers.committed), len(writers.rolled_back), done[0][0], n))
    assert outbox.relay.stop() == 0


def test_first_start_from_now_skips_earlier_events(outbox, kafka):
    before = Writers(outbox.db, outbox, count=1, gen=0).start()
    try:
        wait_rows(before, 100)
    finally:
        before.stop()
    outbox.reconfigure(extra_relay='first_start = "from-now";')
    outbox.relay.start()
    outbox.relay.wait_streaming()
    after = Writers(outbox.db, outbox, count=2, gen=1).start()
    try:
        wait_rows(after, 200)
    finally:
        after.stop()
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    assert_published_once(kafka, outbox.topic("user"), after.committed,
                          after.rolled_back | before.rolled_back | set(before.committed))
    assert all(why != "first start" or n == 0 for n, why in backfills(outbox.relay))
    assert outbox.relay.stop() == 0


# ---------------------------------------------------------------------------------------------
# Slot lost while a checkpoint exists
# ---------------------------------------------------------------------------------------------

def test_slot_dropped_under_load_is_recovered(outbox, kafka):
    """The slot is dropped twice under the running relay while writers go on: each time the relay
    makes a new slot and publishes from the table what that slot cannot deliver."""
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox).start()
    try:
        for round_ in (1, 2):
            wait_rows(writers, 400)
            wait_checkpoint(outbox.db, outbox.slot, outbox.relay)  # Kafka has a checkpoint of this slot
            drop_slot(outbox.db, outbox.slot)
            wait_backfill(outbox.relay, "slot lost", nth=round_)
        wait_rows(writers, 400)
    finally:
        writers.stop()
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    n = assert_published_once(kafka, outbox.topic("user"), writers.committed, writers.rolled_back)
    lost = [c for c, why in backfills(outbox.relay) if why == "slot lost"]
    assert len(lost) == 2, backfills(outbox.relay)
    print("slot dropped twice: %d committed, %d rolled back, backfilled %s, %d records read"
          % (len(writers.committed), len(writers.rolled_back), lost, n))
    assert outbox.relay.stop() == 0


def test_slot_dropped_under_writers_using_savepoints_is_recovered(outbox, kafka):
    """Rows written under savepoints have the savepoint's xid as xmin while the stream and the
    checkpoint name the top-level xid: the kit's txid column tells them apart."""
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox, savepoints=True).start()
    try:
        wait_rows(writers, 400)
        wait_checkpoint(outbox.db, outbox.slot, outbox.relay)
        drop_slot(outbox.db, outbox.slot)
        wait_backfill(outbox.relay, "slot lost")
        wait_rows(writers, 400)
    finally:
        writers.stop()
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    assert_published_once(kafka, outbox.topic("user"), writers.committed, writers.rolled_back)
    assert outbox.relay.stop() == 0


def test_relay_killed_while_recovering_is_still_exactly_once(outbox, kafka):
    """A failure of the recovery path never confirms a slot past an event that was not published:
    twice the slot is dropped, and the relay killed (-9) just after it made its new one, before
    the recovery could finish; the third start finds the last killed relay's slot, ahead of the
    checkpoint, and recovers."""
    outbox.relay.start()
    outbox.relay.wait_streaming()
    writers = Writers(outbox.db, outbox).start()
    try:
        wait_rows(writers, 300)
        wait_checkpoint(outbox.db, outbox.slot, outbox.relay)
        assert outbox.relay.stop() == 0
        wait_rows(writers, 3000)  # what the recovery must publish from the table
        for _ in range(2):
            drop_slot(outbox.db, outbox.slot, missing_ok=True)
            outbox.relay.start()
            wait_for(lambda: outbox.relay.proc.poll() is not None or outbox.db.query(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (outbox.slot,)), 60,
                interval=0.01, what="the relay's new slot")
            outbox.relay.stop(signal.SIGKILL)
            assert not [b for b in backfills(outbox.relay) if b[1] == "slot lost"], "killed too late: the recovery was over"
        outbox.relay.start()
        wait_backfill(outbox.relay, "slot lost")
        wait_rows(writers, 300)
    finally:
        writers.stop()
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    assert_published_once(kafka, outbox.topic("user"), writers.committed, writers.rolled_back)
    assert outbox.relay.stop() == 0


@pytest.mark.parametrize("stop", ["sigterm", "kill9"])
def test_standby_promoted_without_the_slot_is_recovered(kafka, own_pg, target_on, stop):
    """Plain streaming replication, no HA manager: the relay runs on the primary, the primary is
    stopped after more rows and the standby, which has every row but not the slot, is promoted.
    The relay, pointed at it with the same slot name and transactional.id, publishes every row of
    its outbox.events once."""
    primary, standby = own_pg(), None
    try:
        t = target_on(primary, txn_id="recovery-failover-" + uuid.uuid4().hex[:8])
        standby = primary.standby()
        t.relay.start()
        t.relay.wait_streaming()
        streamed = Writers(t.db, t).start()
        try:
            wait_rows(streamed, 300)
            wait_checkpoint(t.db, t.slot, t.relay)  # else the next start is a first start
            wait_rows(streamed, 300)
            if stop == "kill9":  # rows in flight, the checkpoint behind them
                t.relay.stop(signal.SIGKILL)
        finally:
            streamed.stop()
        standby.wait_replayed()
        if stop == "sigterm":
            assert t.relay.stop() == 0
        unseen = Writers(t.db, t, first_seq=1 * PHASE).start()  # after the relay, before the failover
        try:
            wait_rows(unseen, 300)
        finally:
            unseen.stop()
        standby.wait_replayed()
        primary.stop()
        standby.promote()
        t.point_at(harness.Database(standby, t.db.name))
        after = Writers(t.db, t, first_seq=2 * PHASE).start()  # on the promoted server, across the relay's start
        try:
            wait_rows(after, 300)
            t.relay.start()
            wait_backfill(t.relay, "slot lost")
            wait_rows(after, 300)
        finally:
            after.stop()
        wait_caught_up(t.db, t.slot, t.relay)
        committed, rolled_back = merged(streamed, unseen, after)
        in_table = table_events(t.db)
        assert set(committed) <= set(in_table), "the promoted server lacks committed rows"
        n = assert_published_once(kafka, t.topic("user"), in_table, rolled_back)
        print("failover (%s): %d rows in the promoted server, backfilled %s, %d records read"
              % (stop, len(in_table), backfills(t.relay), n))
        assert t.relay.stop() == 0
    finally:
        if standby is not None:
            t.relay.kill()
            standby.cleanup()


def test_invalidated_slot_is_recovered(kafka, own_pg, target_on):
    """max_slot_wal_keep_size invalidated the stopped relay's slot while rows were written: the
    relay drops it, makes a new one and publishes the rows from the table."""
    server = own_pg()
    t = target_on(server)
    t.relay.start()
    t.relay.wait_streaming()
    streamed = Writers(t.db, t).start()
    try:
        wait_rows(streamed, 300)
    finally:
        streamed.stop()
    wait_caught_up(t.db, t.slot, t.relay)
    assert t.relay.stop() == 0
    unseen = Writers(t.db, t, first_seq=1 * PHASE).start()
    try:
        wait_rows(unseen, 300)
    finally:
        unseen.stop()
    server.invalidate_slot(t.slot)
    t.relay.start()
    wait_backfill(t.relay, "slot lost")
    after = Writers(t.db, t, count=1, first_seq=2 * PHASE).start()
    try:
        wait_rows(after, 100)
    finally:
        after.stop()
    wait_caught_up(t.db, t.slot, t.relay)
    committed, rolled_back = merged(streamed, unseen, after)
    assert_published_once(kafka, t.topic("user"), committed, rolled_back)
    assert t.relay.stop() == 0


# ---------------------------------------------------------------------------------------------
# Where recovery cannot be exact: one line, exit 1
# ---------------------------------------------------------------------------------------------

def stream_then_lose_the_slot(t, rows=50):
    """The relay streams some rows, stops; the slot is dropped. Returns the rows' Writers."""
    t.relay.start()
    t.relay.wait_streaming()
    w = Writers(t.db, t, count=1).start()
    try:
        wait_rows(w, rows)
    finally:
        w.stop()
    wait_caught_up(t.db, t.slot, t.relay)
    assert t.relay.stop() == 0
    drop_slot(t.db, t.slot)
    return w


def test_recovery_refused_without_commit_timestamps(kafka, own_pg, target_on):
    t = target_on(own_pg(track_commit_timestamp="off"))
    # The first start is not what is tested here: from-now keeps it independent of whether a
    # backfill needs commit timestamps.
    t.reconfigure(extra_relay='first_start = "from-now";')
    stream_then_lose_the_slot(t)
    t.relay.start()
    assert t.relay.wait_exit(60) == 1
    errors = error_lines(t.relay)
    assert len(errors) == 1 and "track_commit_timestamp" in errors[0], errors


def test_slot_loss_stop_keeps_the_refusal(outbox, kafka):
    """slot_loss = "stop": today's refusal, also where recovery would be possible."""
    outbox.reconfigure(extra_relay='slot_loss = "stop";')
    stream_then_lose_the_slot(outbox)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    errors = error_lines(outbox.relay)
    assert len(errors) == 1, errors
    assert "does not exist (dropped, or lost in a failover), but this relay's checkpoint" in errors[0]
    assert 'Refusing to start: relay.slot_loss = "stop"' in errors[0]
    assert not [b for b in backfills(outbox.relay) if b[1] == "slot lost"]


def test_slot_loss_with_emit_source_is_refused(outbox, kafka):
    """outbox.emit() events leave no row: the table cannot stand in for the lost slot."""
    outbox.reconfigure(
        extra_relay='first_start = "from-now";',  # see test_recovery_refused_without_commit_timestamps
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                '{ message_prefix = "outbox"; topic = "%s.${aggregate_type}"; }' % (outbox.prefix, outbox.prefix))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute("SELECT outbox.emit('user', 'u-1', 'Changed', '{}')")
    outbox.db.execute("SELECT outbox.publish('user', 'u-1', 'Changed', '{}')")
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    assert len(kafka.consume([outbox.topic("user")], timeout=30)) == 2
    assert outbox.relay.stop() == 0
    drop_slot(outbox.db, outbox.slot)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and "emit" in errors[0], errors


def capture_setup(outbox, extra_relay=""):
    """An outbox source and a captured table public.accounts (rows 1..20), first start from now."""
    outbox.db.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, balance int NOT NULL)")
    outbox.db.execute("INSERT INTO public.accounts SELECT i, 100 FROM generate_series(1, 20) i")
    outbox.reconfigure(
        capture='{ tables = "public.accounts"; snapshot = false; }',
        extra_relay='topic_prefix = "%s"; first_start = "from-now"; %s' % (outbox.prefix, extra_relay))
    return outbox.prefix + ".public.accounts"


def test_slot_loss_with_captured_tables_is_refused_by_default(outbox, kafka):
    """The changes of captured tables in the lost window cannot be recovered from current rows:
    capture_on_slot_loss = "stop" (the default) refuses, naming the setting that accepts it."""
    capture_setup(outbox)
    stream_then_lose_the_slot(outbox)
    outbox.relay.start()
    assert outbox.relay.wait_exit(60) == 1
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and "capture_on_slot_loss" in errors[0], errors


def test_slot_loss_with_captured_tables_resnapshots_them(outbox, kafka):
    """capture_on_slot_loss = "resnapshot": the captured tables are published again as they are
    (op r, current values), and the outbox rows are recovered from the table exactly once."""
    topic = capture_setup(outbox, 'capture_on_slot_loss = "resnapshot";')
    w = stream_then_lose_the_slot(outbox)
    # Changes in the window the new slot cannot deliver.
    outbox.db.execute("UPDATE public.accounts SET balance = 200 + id WHERE id <= 10")
    outbox.db.execute("DELETE FROM public.accounts WHERE id = 20")
    outbox.db.execute("INSERT INTO public.accounts VALUES (21, 121)")
    unseen = Writers(outbox.db, outbox, count=1, first_seq=PHASE).start()
    try:
        wait_rows(unseen, 50)
    finally:
        unseen.stop()
    outbox.relay.start()
    wait_backfill(outbox.relay, "slot lost")
    wait_caught_up(outbox.db, outbox.slot, outbox.relay)
    committed, rolled_back = merged(w, unseen)
    assert_published_once(kafka, outbox.topic("user"), committed, rolled_back)
    current = dict(outbox.db.query("SELECT id, balance FROM public.accounts"))

    def snapshot(msgs):
        """{id: balance} of the op r records (the snapshot runs alongside the stream)."""
        values = (json.loads(m["value"]) for m in msgs if m["value"])
        return {v["after"]["id"]: v["after"]["balance"] for v in values if v["op"] == "r"}
    msgs = kafka.consume([topic], until=lambda msgs: snapshot(msgs).keys() >= current.keys(), timeout=60)
    assert snapshot(msgs) == current
