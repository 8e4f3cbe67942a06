# PostgreSQL HA with Patroni (issue 19, part 1): the relay rides through a failover of a Patroni
# cluster on the permanent logical slot Patroni keeps on the replica.
"""The relay against a throwaway Patroni cluster (harness.PatroniCluster: etcd, two PostgreSQL 15
nodes, synchronous_mode) whose dynamic configuration holds a permanent logical slot for it
(`slots: {relay_slot: {type: logical, database: app, plugin: wal2json}}`). The relay is the
current one, unchanged: a multi-host conninfo with target_session_attrs=read-write finds the
primary, `postgresql.create_slot = false` (Patroni made the slot). Writers go on across the
failover (a broken connection is a transaction in doubt; they reconnect to the new primary).

Each test ends with a read_committed consumer: every event of the new primary's outbox.events
exactly once, in per-key order, none of a rolled-back transaction and none the new primary does
not have (a phantom; after a crash without postgresql.wait_for_standbys phantoms can happen,
and the relay must announce them); every transaction a writer saw committed is on the new primary
(synchronous_mode); the relay went on from the slot Patroni kept, without the outbox table
recovery of a lost slot.
"""
import os
import random
import re
import signal
import time
import uuid

import psycopg2
import pytest

import harness
import relayctl
from events import Writers
from harness import wait_for

SLOT = "relay_slot"
STREAMING = "streaming from slot"


class FailoverWriters(Writers):
    """events.Writers whose threads ride through a failover: when the connection breaks, the
    transaction is in doubt (committed or not, by whether its commit reached the standby), so it
    is in neither committed nor rolled_back; the writer reconnects (the multi-host conninfo finds
    the new primary) and goes on with sequence numbers past it, so per-key order still holds."""

    def __init__(self, db, outbox, **kw):
        super().__init__(db, outbox, **kw)
        self.connection_errors = 0  # transactions broken and connection attempts refused

    def _run(self, w, max_rows):
        rnd = random.Random(w + self.first_seq)
        seq = self.first_seq
        conn = None
        while not self.stop_flag.is_set():
            try:
                if conn is None:
                    conn = self.db.connect(autocommit=False)
                seq = self.write_transaction(conn, rnd, w, max_rows, seq)
            except psycopg2.Error:
                with self.lock:
                    self.connection_errors += 1
                seq += max_rows  # a broken transaction used at most max_rows numbers
                try:
                    if conn is not None:
                        conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                self.stop_flag.wait(0.1)  # no primary for a moment: try again soon
            except Exception as e:  # reported by stop()
                self.errors.append(e)
                break
        if conn is not None:
            conn.close()


class Target:
    """What Writers need of the outbox fixture (only .topic is read)."""

    def __init__(self, prefix):
        self.prefix = prefix

    def topic(self, aggregate_type):
        return "%s.%s" % (self.prefix, aggregate_type)


@pytest.fixture
def cluster(request):
    """A started harness.PatroniCluster of the test's own (about 10 s), removed afterwards; its
    nodes' logs are printed when the test failed."""
    c = harness.PatroniCluster()
    try:
        c.start()
        yield c
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print("---- Patroni cluster\n" + c.describe())
        c.cleanup()


def slot_confirmed(db, slot):
    """The slot's confirmed_flush_lsn on the primary as a number (0: none, or no primary now)."""
    try:
        r = db.query("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    except psycopg2.OperationalError:  # a node restarting (the old primary rejoining)
        return 0
    return int(r[0][0]) if r and r[0][0] is not None else 0


def relay_alive(relay):
    assert relay.proc.poll() is None, "relay exited (code %s):\n%s" % (relay.proc.returncode, relay.log()[-4000:])


def wait_rows(writers, more, relay, timeout=60):
    target = writers.count() + more
    wait_for(lambda: writers.count() >= target or relay.proc.poll() is not None, timeout,
             what="%d more rows committed" % more)
    relay_alive(relay)


def wait_checkpoint(db, relay, timeout=60):
    """Until the relay confirms the slot further than now: Kafka then holds a newer checkpoint."""
    now = slot_confirmed(db, SLOT)
    wait_for(lambda: relay.proc.poll() is not None or slot_confirmed(db, SLOT) > now, timeout,
             what="the relay to confirm its slot past %x" % now)
    relay_alive(relay)


def wait_caught_up(db, relay, timeout=60):
    """Until the relay confirmed the primary's current WAL position: every row committed before
    is in Kafka (it confirms only what Kafka committed, and idle positions once a second)."""
    end = int(db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0])
    wait_for(lambda: relay.proc.poll() is not None or slot_confirmed(db, SLOT) >= end, timeout,
             what="the relay to confirm its slot up to the current WAL position")
    relay_alive(relay)


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def copy_lsn(node):
    """The confirmed_flush_lsn of the node's copy of the slot as a number (0: none, or down)."""
    slot = node.slot(SLOT)
    return lsn(slot["confirmed_flush_lsn"]) if slot and slot["confirmed_flush_lsn"] else 0


def table_events(db):
    """Every event in the primary's outbox.events: {id: (key, seq)}."""
    return {eid: (key, payload["seq"])
            for eid, key, payload in db.query("SELECT id::text, aggregate_id, payload FROM outbox.events")}


def read_published(kafka, topic, in_table, writers, *more):
    """A read_committed consumer reads the topic to its end: every event of the table exactly
    once, in seq order per key, no rolled-back event. Returns (the record count, the ids
    published that the table does not have: phantoms)."""
    msgs = kafka.consume([topic], timeout=60)
    seen, last, phantoms = set(), {}, set()
    dups, rolled_back, disorder = 0, [], []
    rolled_back_ids = set(writers.rolled_back).union(*(w.rolled_back for w in more))
    for m in msgs:
        eid = dict(m["headers"])["event_id"].decode()
        if eid in rolled_back_ids:
            rolled_back.append(eid)
        if eid in seen:
            dups += 1
            continue
        seen.add(eid)
        if eid not in in_table:
            phantoms.add(eid)
            continue
        key, s = in_table[eid]
        assert m["key"] == key.encode()
        if last.get(key, -1) >= s:
            disorder.append(key)
        last[key] = s
    lost = set(in_table) - seen
    assert not rolled_back, "%d events of rolled-back transactions published" % len(rolled_back)
    assert (dups, len(lost), len(disorder)) == (0, 0, 0), (
        "%d duplicates, %d of %d rows lost, %d keys out of order" % (dups, len(lost), len(in_table), len(disorder)))
    return len(msgs), phantoms


def check_published(kafka, topic, in_table, writers, *more):
    """read_published, and no phantom. Returns the record count."""
    n, phantoms = read_published(kafka, topic, in_table, writers, *more)
    assert not phantoms, ("%d phantom events: published, but the new primary has no such row "
                          "(a transaction the standby never received)" % len(phantoms))
    return n


def check_phantoms_announced(kafka, topic, in_table, log_after, writers, *more):
    """read_published after a crash without postgresql.wait_for_standbys: a commit decoded before
    the synchronous standby had it may be published and then lost with the primary (a phantom,
    docs/operations.md "Detected: a failover behind what was published"). Phantoms are allowed
    only when the relay announced the fork (its `error timeline fork` line), and only of
    transactions whose writer never saw the commit (in doubt). Returns the record count."""
    n, phantoms = read_published(kafka, topic, in_table, writers, *more)
    if phantoms:
        seen_committed = set(writers.committed).union(*(w.committed for w in more))
        assert not phantoms & seen_committed, "a phantom of a transaction a writer saw committed"
        assert "error timeline fork" in log_after, (
            "%d phantom events, and the relay did not announce a timeline fork:\n%s"
            % (len(phantoms), log_after[-4000:]))
        print("%d phantom events (the crash came between a commit's local flush and the standby's), "
              "announced: %s" % (len(phantoms), re.search(r"error timeline fork.*", log_after).group(0)))
    return n


@pytest.mark.parametrize("how", ["kill9_postmaster", "switchover"])
def test_patroni_failover_on_the_permanent_slot(cluster, kafka, tmp_path, request, how):
    """kill9_postmaster: kill -9 of the primary's postmaster under writers (Patroni fails over at
    once, primary_start_timeout = 0), without postgresql.wait_for_standbys: phantoms may happen
    and must be announced (check_phantoms_announced); switchover: a clean switchover (REST API,
    as patronictl): no phantom.
    The relay finds the new primary through its multi-host conninfo and goes on from the copy
    of its slot that Patroni kept there."""
    db = cluster.create_database("app")
    relayctl.install_outbox(db)
    cluster.add_permanent_slot(SLOT, db.name)
    target = Target("t" + uuid.uuid4().hex[:10])
    config_path = str(tmp_path / "relay.conf")
    # The relay's first start on the slot Patroni made (no checkpoint topic yet). switchover:
    # postgresql.adopt_slot = "recreate": the relay makes the slot again with a snapshot and
    # backfills the events written before it; kill9_postmaster: "as-is" (and create_slot =
    # false): it starts at the slot's position (before every event here).
    before = Writers(db, target, max_rows=1).start()
    wait_for(lambda: before.count() >= 50, 30, what="50 events before the relay's first start")
    before.stop()
    relayctl.write_config(config_path, db.dsn, kafka.bootstrap, SLOT, target.prefix + ".${aggregate_type}",
                          extra_pg='create_slot = false; adopt_slot = "as-is";' if how == "kill9_postmaster"
                          else 'adopt_slot = "recreate";',
                          extra_relay='checkpoint_topic = "%s.checkpoints";' % target.prefix)
    relay = relayctl.Relay(config_path, str(tmp_path))
    try:
        relay.start()
        relay.wait_streaming(60)
        first = ("starting at the slot's position" if how == "kill9_postmaster"
                 else "backfill done: %d events (first start)" % len(table_events(db)))
        relay.wait_log(first, timeout=60)
        writers = FailoverWriters(db, target, first_seq=10 ** 6).start()
        try:
            old = cluster.wait_failover_ready([SLOT])
            replica = next(n for n in cluster.nodes if n is not old)
            copied_at = copy_lsn(replica)
            wait_rows(writers, 300, relay)
            wait_checkpoint(db, relay)  # Kafka holds a checkpoint of this slot
            # Patroni advances the replica's copy to where the relay confirmed the primary's slot.
            wait_for(lambda: copy_lsn(replica) > copied_at, 30, interval=0.2,
                     what="Patroni advancing the slot's copy on %s past %x" % (replica.name, copied_at))
            wait_rows(writers, 300, relay)
            positions = "slot on %s at %s, its copy on %s at %s" % (
                old.name, (old.slot(SLOT) or {}).get("confirmed_flush_lsn"), replica.name,
                (replica.slot(SLOT) or {}).get("confirmed_flush_lsn"))
            since = len(relay.log())
            t0 = time.monotonic()
            if how == "kill9_postmaster":
                old, new = cluster.crash_primary()
            else:
                old, new = cluster.switchover()
            t_leader = time.monotonic() - t0
            wait_for(lambda: STREAMING in relay.log()[since:] or relay.proc.poll() is not None, 90,
                     interval=0.1, what="the relay streaming again after the failover")
            t_relay = time.monotonic() - t0
            print("relay log after the %s of %s:\n%s" % (how, old.name, relay.log()[since:][-6000:]))
            relay_alive(relay)
            wait_rows(writers, 300, relay)  # on the new primary
        finally:
            writers.stop()
        wait_caught_up(db, relay)
        in_table = table_events(db)
        committed = set(writers.committed) | set(before.committed)
        missing = committed - set(in_table)
        assert not missing, "%d transactions' rows a writer saw committed are not on the new primary" % len(missing)
        if how == "kill9_postmaster":
            n = check_phantoms_announced(kafka, target.topic("user"), in_table, relay.log()[since:], writers, before)
        else:
            n = check_published(kafka, target.topic("user"), in_table, writers, before)
        lost_slot = re.findall(r"backfill done: \d+ events \(slot lost\)", relay.log())
        assert not lost_slot, "the relay recovered from the table instead of using Patroni's slot: %s" % lost_slot
        assert new.slot(SLOT) is not None
        print("%s: %s -> %s, leader after %.1f s, relay streaming after %.1f s; %d rows on the new "
              "primary (%d committed, %d in doubt, %d rolled back; %d connection errors), %d records "
              "read; before: %s"
              % (how, old.name, new.name, t_leader, t_relay, len(in_table), len(committed),
                 len(set(in_table) - committed), len(writers.rolled_back), writers.connection_errors, n,
                 positions))
        assert relay.stop() == 0
    finally:
        relayctl.end_of_test(relay, request)


def walsender_of(primary, standby):
    """The pid of the primary's walsender that streams to the standby (its application_name)."""
    rows = primary.query("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (standby.name,))
    assert rows, "%s does not stream to %s" % (primary.name, standby.name)
    return rows[0][0]


def waiting_for_sync(primary):
    """Backends of the primary whose commit is flushed locally and waits for the synchronous
    standby: transactions the standby does not have, which the relay may already have read."""
    return primary.query("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")[0][0]


def metrics(port):
    """The relay's plain metric series: {name: value}."""
    import urllib.request
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line}


def test_primary_crash_with_the_standby_behind_publishes_no_phantom(cluster, kafka, tmp_path, request):
    """postgresql.wait_for_standbys (issue 19 part 2): the primary's walsender to the standby is
    stopped (SIGSTOP: it sends nothing more), so writers' commits are flushed on the primary but
    not on the standby; the relay reads them all the same (PostgreSQL 15 decodes what is flushed
    locally) and holds its Kafka commit back. Then the primary crashes (kill -9 of the stopped
    walsender and the postmaster) and Patroni promotes the standby, which never got those
    transactions. Nothing of them may be in Kafka; everything the new primary has, exactly once."""
    db = cluster.create_database("app")
    relayctl.install_outbox(db)
    cluster.add_permanent_slot(SLOT, db.name)
    target = Target("t" + uuid.uuid4().hex[:10])
    config_path = str(tmp_path / "relay.conf")
    names = ", ".join('"%s"' % n.name for n in cluster.nodes)
    port = harness.free_port()
    relayctl.write_config(config_path, db.dsn, kafka.bootstrap, SLOT, target.prefix + ".${aggregate_type}",
                          extra_pg='wait_for_standbys = [ %s ]; adopt_slot = "recreate";' % names,
                          extra_relay='checkpoint_topic = "%s.checkpoints"; metrics_listen = "127.0.0.1:%d";'
                          % (target.prefix, port))
    relay = relayctl.Relay(config_path, str(tmp_path))
    try:
        relay.start()
        relay.wait_streaming(60)
        writers = FailoverWriters(db, target).start()
        try:
            old = cluster.wait_failover_ready([SLOT])
            standby = next(n for n in cluster.nodes if n is not old)
            wait_rows(writers, 200, relay)
            wait_checkpoint(db, relay)
            # The latency the gate adds while the standby streams: a measurement, not a bound.
            m0 = metrics(port)
            wait_rows(writers, 3000, relay)
            wait_checkpoint(db, relay)
            m1 = metrics(port)
            steady = [m1[k] - m0[k] for k in ("outbox_relay_standby_waits_total",
                                              "outbox_relay_standby_wait_microseconds_total")]
            sender = walsender_of(old, standby)
            since = len(relay.log())
            os.kill(sender, signal.SIGSTOP)
            # Commits now wait for the standby; the relay has read them and holds its commit.
            wait_for(lambda: waiting_for_sync(old) >= 1, 30, interval=0.05,
                     what="a commit flushed on %s and waiting for %s" % (old.name, standby.name))
            relay.wait_log("holding back publishing", timeout=30, since=since)
            held = waiting_for_sync(old)
            t0 = time.monotonic()
            # The postmaster first: killed before it, the walsender would make it restart the
            # server, and the standby could catch up meanwhile.
            os.kill(old.postmaster_pid(), signal.SIGKILL)
            os.kill(sender, signal.SIGKILL)
            new = cluster.wait_leader(90, other_than=old)
            assert new is standby
            wait_for(lambda: STREAMING in relay.log()[since:] and
                     relay.log()[since:].rfind(STREAMING) > relay.log()[since:].find("holding back publishing"), 90,
                     interval=0.1, what="the relay streaming from the new primary")
            t_relay = time.monotonic() - t0
            relay_alive(relay)
            wait_rows(writers, 200, relay)  # on the new primary (the old one rejoins by pg_rewind)
        finally:
            writers.stop()
        wait_caught_up(db, relay, timeout=120)
        in_table = table_events(db)
        missing = set(writers.committed) - set(in_table)
        assert not missing, "%d rows a writer saw committed are not on the new primary" % len(missing)
        n = check_published(kafka, target.topic("user"), in_table, writers)
        print("standby behind: %d commits waited for %s when %s crashed; relay streaming %.1f s "
              "later; %d rows on the new primary, %d records read; while the standby streamed, "
              "publishing asked for it %d times, %.1f ms in all (%.2f ms each)\nrelay log:\n%s"
              % (held, standby.name, old.name, t_relay, len(in_table), n, steady[0], steady[1] / 1000,
                 steady[1] / 1000 / max(steady[0], 1), relay.log()[since:][-5000:]))
        assert relay.stop() == 0
    finally:
        relayctl.end_of_test(relay, request)


def switchover_when_ready(cluster, attempts=5):
    """cluster.switchover(), again while Patroni answers 503 (its status of the last one unknown)."""
    for n in range(attempts):
        try:
            return cluster.switchover()
        except RuntimeError as e:
            if "503" not in str(e) or n == attempts - 1:
                raise
            cluster.wait_failover_ready([SLOT], timeout=60)


@pytest.mark.skipif(not os.environ.get("HA_ROUNDS"), reason="opt-in: make ha-soak (HA_ROUNDS failovers)")
def test_repeated_failovers_and_switchovers(cluster, kafka, tmp_path, request):
    """make ha-soak: HA_ROUNDS rounds under writers, a kill -9 of the primary's postmaster and a
    switchover in turn, the relay with postgresql.wait_for_standbys; at the end every event of
    the last primary exactly once, in per-key order, none rolled back, no phantom."""
    rounds = int(os.environ["HA_ROUNDS"])
    db = cluster.create_database("app")
    relayctl.install_outbox(db)
    cluster.add_permanent_slot(SLOT, db.name)
    target = Target("t" + uuid.uuid4().hex[:10])
    config_path = str(tmp_path / "relay.conf")
    names = ", ".join('"%s"' % n.name for n in cluster.nodes)
    relayctl.write_config(config_path, db.dsn, kafka.bootstrap, SLOT, target.prefix + ".${aggregate_type}",
                          extra_pg='wait_for_standbys = [ %s ]; adopt_slot = "recreate";' % names,
                          extra_relay='checkpoint_topic = "%s.checkpoints";' % target.prefix)
    relay = relayctl.Relay(config_path, str(tmp_path))
    times = []
    try:
        relay.start()
        relay.wait_streaming(60)
        writers = FailoverWriters(db, target).start()
        try:
            for i in range(rounds):
                cluster.wait_failover_ready([SLOT], timeout=120)
                wait_rows(writers, 300, relay)
                wait_checkpoint(db, relay)
                since = len(relay.log())
                t0 = time.monotonic()
                old, new = cluster.crash_primary() if i % 2 == 0 else switchover_when_ready(cluster)
                wait_for(lambda: STREAMING in relay.log()[since:] or relay.proc.poll() is not None, 90,
                         interval=0.1, what="the relay streaming again after round %d" % i)
                times.append(time.monotonic() - t0)
                relay_alive(relay)
                wait_rows(writers, 300, relay, timeout=120)
        finally:
            writers.stop()
        wait_caught_up(db, relay, timeout=120)
        in_table = table_events(db)
        missing = set(writers.committed) - set(in_table)
        assert not missing, "%d rows a writer saw committed are not on the last primary" % len(missing)
        n = check_published(kafka, target.topic("user"), in_table, writers)
        print("ha-soak: %d rounds (kill -9 and switchover in turn); relay streaming again after %s s; "
              "%d rows on the last primary (%d committed, %d in doubt, %d rolled back), %d records read"
              % (rounds, ", ".join("%.1f" % t for t in times), len(in_table), len(writers.committed),
                 len(set(in_table) - set(writers.committed)), len(writers.rolled_back), n))
        assert relay.stop() == 0
    finally:
        relayctl.end_of_test(relay, request)
