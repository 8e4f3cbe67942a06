# A failover to a standby that lacks what the relay published (issue 19): the relay names the phantoms and loses nothing of the new timeline.
"""PostgreSQL before 17 lets a logical walsender send a transaction once its commit is flushed
locally, before any standby has it, even with synchronous replication. Here the primary's
walsender to its synchronous standby is stopped (SIGSTOP): the writers' commits then wait for the
standby, but the relay decodes and publishes them (a writer started after the stop makes sure
at least one such commit exists: the walsender may have sent the others already). The primary's postmaster is killed (kill -9),
Patroni promotes the standby (the synchronous one, so it may), and its new timeline forks before
the relay's checkpoint.

The relay must (docs/exactly-once.md, docs/operations.md "PostgreSQL HA with Patroni"):
- log one error line naming the two timelines, the fork and the checkpoint, and the xids of the
  published transactions the new primary does not have; those are exactly the events in Kafka
  that are not in the new primary's outbox table (the phantoms);
- go on from the fork: a read_committed consumer sees every event of the new primary's table
  exactly once, in per-key order, and none of a rolled-back transaction.

Helpers live here (not in harness.py); the Patroni cluster is harness.PatroniCluster, writers and
the topic naming come from test_ha.py.
"""
import json
import os
import re
import signal
import time
import urllib.request
import uuid

import pytest

import harness
import relayctl
from harness import wait_for
from test_ha import FailoverWriters, Target, cluster, read_published  # noqa: F401 (cluster: a fixture)

SLOT = "relay_slot"
STREAMING = "streaming from slot"
FORK_LINE = re.compile(r"error timeline fork: the server is on timeline (\d+), which left timeline "
                       r"(\d+) at ([0-9A-F]+/[0-9A-F]+); this relay's checkpoint in Kafka is at "
                       r"([0-9A-F]+/[0-9A-F]+) on timeline (\d+).*")


class XidWriters(FailoverWriters):
    """FailoverWriters that note each event's transaction id (pg_current_xact_id(), read inside
    the transaction before its commit), so that a phantom event can be told by its xid even
    though no server has its row any more: xid_of maps event id -> xid."""

    def __init__(self, db, outbox, **kw):
        super().__init__(db, outbox, **kw)
        self.xid_of = {}

    def write_transaction(self, conn, rnd, w, max_rows, seq):
        cur = conn.cursor()
        ids = []
        for _ in range(rnd.randint(1, max_rows)):
            key = "g%d-w%d-k%d" % (self.gen, w, rnd.randint(0, 9))
            cur.execute("SELECT outbox.publish('user', %s, 'Changed', %s::jsonb)",
                        (key, json.dumps({"g": self.gen, "w": w, "seq": seq})))
            ids.append((cur.fetchone()[0], key, seq))
            seq += 1
        cur.execute("SELECT pg_current_xact_id()::text")
        xid = int(cur.fetchone()[0]) & 0xFFFFFFFF
        with self.lock:
            for i, _, _ in ids:
                self.xid_of[i] = xid
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


def lsn(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def relay_alive(relay):
    assert relay.proc.poll() is None, "relay exited (code %s):\n%s" % (relay.proc.returncode, relay.log()[-4000:])


def slot_confirmed(node_or_db):
    rows = node_or_db.query("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s",
                            (SLOT,))
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def wait_rows(writers, more, relay, timeout=30):
    target = writers.count() + more
    wait_for(lambda: writers.count() >= target or relay.proc.poll() is not None, timeout,
             what="%d more rows committed" % more)
    relay_alive(relay)


def hold_standby(primary, standby):
    """SIGSTOP the primary's walsender to the standby: from now on the standby receives nothing,
    and commits wait for it (synchronous_mode). Returns the walsender's pid (SIGKILL it once the
    standby was promoted: a stopped process never notices its postmaster died)."""
    rows = primary.query("SELECT pid FROM pg_stat_replication WHERE application_name = %s", (standby.name,))
    assert len(rows) == 1, "no walsender to %s on %s: %s" % (standby.name, primary.name, rows)
    pid = rows[0][0]
    os.kill(pid, signal.SIGSTOP)
    return pid


def standby_settled(standby):
    """The standby's received WAL end once it stopped growing and all of it was replayed."""
    def settled():
        a = standby.query("SELECT pg_last_wal_receive_lsn() - '0/0', pg_last_wal_replay_lsn() - '0/0'")[0]
        time.sleep(0.2)
        b = standby.query("SELECT pg_last_wal_receive_lsn() - '0/0', pg_last_wal_replay_lsn() - '0/0'")[0]
        return int(b[0]) if a == b and b[0] == b[1] else None
    return wait_for(settled, 20, interval=0, what="the held standby to replay all it received")


def event_ids(msgs):
    return [dict(m["headers"])["event_id"].decode() for m in msgs]


def wait_published_beyond(kafka, topic, standby):
    """Until Kafka (read_committed) holds events the standby's table does not: published
    transactions that only the held-back primary has. Returns their ids."""
    def beyond():
        on_standby = {r[0] for r in standby.query("SELECT id::text FROM outbox.events", dbname="app")}
        extra = set(event_ids(kafka.consume([topic], timeout=10))) - on_standby
        return extra or None
    return wait_for(beyond, 90, interval=0.2, what="the relay publishing events the standby does not have")


def scrape(port, name):
    """One sample of the relay's metrics (relay.metrics_listen)."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("outbox_relay_%s " % name):
                return float(line.split()[1])
    return None


def relay_status(config_path):
    """`outbox-relay status --json`: the checkpoint read from Kafka and the server's timeline."""
    return relayctl.newest_status(config_path)


def checkpoint_sizes(kafka, topic, txn_id):
    """What the relay's checkpoints cost: the largest one's bytes, xids and bytes of "ends"."""
    biggest = None
    for m in kafka.consume([topic], timeout=30):
        if m["key"] == txn_id.encode() and m["value"]:
            cp = json.loads(m["value"])
            ends = len(json.dumps(cp.get("ends", []), separators=(",", ":")))
            size = (len(m["value"]), len(cp.get("xids", [])), ends)
            biggest = max(biggest or size, size)
    return "largest checkpoint: %d bytes, %d xids, %d bytes of ends" % biggest if biggest else "no checkpoint"


def named_xids(text):
    """The xids of the fork line ("xids 7, 9-12" / "xid 7") and its continuation lines."""
    out = set()
    for part in re.findall(r"\b(?:xids?|\(continued\):) ((?:\d+(?:-\d+)?(?:, )?)+)", text):
        for item in part.split(", "):
            if not item:
                continue
            lo, _, hi = item.partition("-")
            out.update(range(int(lo), int(hi or lo) + 1))
    return out


def check_after_fork(kafka, topic, in_table, *writers):
    """test_ha.read_published on the new primary's table: returns the phantoms' ids."""
    return read_published(kafka, topic, in_table, *writers)[1]


def test_failover_behind_the_checkpoint_names_the_phantoms(cluster, kafka, tmp_path, request):
    db = cluster.create_database("app")
    relayctl.install_outbox(db)
    cluster.add_permanent_slot(SLOT, db.name)
    target = Target("t" + uuid.uuid4().hex[:10])
    topic = target.topic("user")
    # Its own checkpoint topic: on the shared one another test's open Kafka transaction would
    # hold this relay's start back until it ends (docs/exactly-once.md, "Reading the checkpoint").
    checkpoints = "%s.checkpoints" % target.prefix
    config_path = str(tmp_path / "relay.conf")
    port = harness.free_port()
    relayctl.write_config(config_path, db.dsn, kafka.bootstrap, SLOT, target.prefix + ".${aggregate_type}",
                          extra_pg="create_slot = false;",
                          extra_relay='metrics_listen = ":%d"; checkpoint_topic = "%s";' % (port, checkpoints))
    kafka.create_topic(checkpoints, partitions=1, config={"cleanup.policy": "compact"})
    relay = relayctl.Relay(config_path, str(tmp_path))
    held = late = None
    try:
        relay.start()
        relay.wait_streaming(60)
        writers = XidWriters(db, target, count=4).start()
        try:
            old = cluster.wait_failover_ready([SLOT])
            standby = next(n for n in cluster.nodes if n is not old)
            wait_rows(writers, 200, relay)
            before = slot_confirmed(old)
            wait_for(lambda: slot_confirmed(old) > before or relay.proc.poll() is not None, 30,
                     what="the relay confirming its slot (a checkpoint in Kafka)")
            relay_alive(relay)

            held = hold_standby(old, standby)
            fork_end = standby_settled(standby)
            # The walsender may have been stopped after it sent every waiting commit (it waited for
            # the standby's answer): then the standby has them all, the writers wait for an answer
            # that never comes, and nothing more is committed. A writer started now commits after
            # the hold, so its first commit is flushed on the primary only: published, never on
            # the standby.
            late = XidWriters(db, target, count=1, gen=1).start()
            beyond = wait_published_beyond(kafka, topic, standby)
            since = len(relay.log())
            t0 = time.monotonic()
            old.kill_postmaster()
            new = cluster.wait_leader(60, other_than=old)
            assert new is standby
            os.kill(held, signal.SIGKILL)  # promoted: what it still had to send goes nowhere
            held = None
            wait_for(lambda: STREAMING in relay.log()[since:] or relay.proc.poll() is not None, 60,
                     interval=0.1, what="the relay streaming from the new primary")
            t_relay = time.monotonic() - t0
            relay_alive(relay)
            wait_rows(writers, 200, relay)  # on the new primary
        finally:
            if held is not None:  # failed before the promotion: let the commits that wait for it end
                os.kill(held, signal.SIGCONT)
                held = None
            try:
                writers.stop()
            finally:
                if late is not None:
                    late.stop()
        end = int(db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0])
        wait_for(lambda: relay.proc.poll() is not None or slot_confirmed(db) >= end, 60,
                 what="the relay confirming the new primary's WAL end")
        relay_alive(relay)

        after = relay.log()[since:]
        print("relay log after the kill:\n%s" % after[-6000:])
        forks = [m for m in FORK_LINE.finditer(after)]
        assert len(forks) == 1, "expected one fork line, got %d:\n%s" % (len(forks), after[-4000:])
        line = forks[0].group(0)
        now_tli, was_tli, fork, checkpoint, cp_tli = forks[0].groups()
        assert int(now_tli) == int(was_tli) + 1 and cp_tli == was_tli, line
        assert lsn(fork) < lsn(checkpoint), line
        assert lsn(fork) >= fork_end, "fork %s before what the standby had replayed (%x)" % (fork, fork_end)
        assert "possibly more" not in line and "cannot be told" not in line, line

        in_table = {eid: (key, payload["seq"])
                    for eid, key, payload in db.query("SELECT id::text, aggregate_id, payload FROM outbox.events")}
        missing = (set(writers.committed) | set(late.committed)) - set(in_table)
        assert not missing, "%d rows a writer saw committed are not on the new primary" % len(missing)
        phantoms = check_after_fork(kafka, topic, in_table, writers, late)
        assert beyond <= phantoms, "events seen beyond the standby before the kill are on the new primary"
        xid_of = dict(writers.xid_of, **late.xid_of)
        phantom_xids = {xid_of[e] for e in phantoms}
        continued = "".join(re.findall(r"phantom xids \(continued\): .*", after))
        named = named_xids(line + "\n" + continued)
        assert named == phantom_xids, "the fork line names xids %s; the phantom events are of %s" % (
            sorted(named), sorted(phantom_xids))
        assert re.search(r"Going on from %s on timeline %s" % (fork, now_tli), line), line
        assert scrape(port, "phantom_transactions_total") == len(phantom_xids)
        assert scrape(port, "timeline_forks_with_phantoms_total") == 1  # OutboxRelayPhantomTransactions
        st = relay_status(config_path)  # the checkpoints written since are of the new timeline
        assert st["checkpoint_timeline"] == st["server_timeline"] == int(now_tli), st
        print("fork of timeline %s at %s, checkpoint %s: %d phantom events of %d transactions (xids %s); "
              "relay streaming %.1f s after the kill; %d events on the new primary; %s"
              % (was_tli, fork, checkpoint, len(phantoms), len(phantom_xids), sorted(phantom_xids), t_relay,
                 len(in_table), checkpoint_sizes(kafka, checkpoints, st["transactional_id"])))
        assert relay.stop() == 0
    finally:
        if held is not None:
            try:
                os.kill(held, signal.SIGKILL)
            except ProcessLookupError:
                pass
        relayctl.end_of_test(relay, request)
