# Active/passive relays (relay.takeover = "wait", issue 19 part 3): two relays with one config file;
# one streams, the other stands by; kill -9 of the active one hands over, exactly once.
import datetime
import os
import re
import signal
import time

import pytest

import harness
import relayctl
from events import Writers, slot_lsns, tally_writers_events
from harness import wait_for

WAIT = 'takeover = "wait";'
STREAMING = "streaming from slot"
TOOK_OVER = "took over slot"
FENCED_LINE = "another relay with the same transactional.id took over"
STANDBY_LOCK_CLASS = 1868722808  # relay/standby.h: the active/passive lock's advisory lock class


def standing_by(outbox):
    """The log line of a relay standing by while another holds the slot."""
    return 'standby: slot "%s" is in use by outbox-relay[' % outbox.slot


@pytest.fixture
def pair(outbox, request):
    """The outbox's relay and a second one with the same config file (its own log), both with
    relay.takeover = "wait"; the second is killed after the test (its log tail shown on failure)."""
    outbox.reconfigure(extra_relay=WAIT)
    second = relayctl.Relay(outbox.config_path, os.path.dirname(outbox.config_path))
    second.log_path = outbox.relay.log_path + ".second"
    yield outbox.relay, second
    relayctl.end_of_test(second, request)


def log_time(line):
    """The wall-clock time (epoch seconds) of a text-format log line."""
    stamp = line.split(" ", 1)[0]
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def first_line_with(text, what):
    return next(line for line in text.splitlines() if what in line)


def holder_pid(outbox):
    """The PID of the relay process streaming from the slot (from its application_name), or None."""
    rows = outbox.db.query(
        "SELECT a.application_name FROM pg_replication_slots s JOIN pg_stat_activity a "
        "ON a.pid = s.active_pid WHERE s.slot_name = %s", (outbox.slot,))
    m = re.match(r"outbox-relay\[(\d+)\]@", rows[0][0]) if rows else None
    return int(m.group(1)) if m else None


def walsender_wait_event(outbox):
    """What the walsender streaming the slot waits on (pg_stat_activity.wait_event), or None."""
    rows = outbox.db.query(
        "SELECT a.wait_event FROM pg_replication_slots s JOIN pg_stat_activity a "
        "ON a.pid = s.active_pid WHERE s.slot_name = %s", (outbox.slot,))
    return rows[0][0] if rows else None


def assert_exactly_once(kafka, outbox, writers, timeout=120):
    """A read_committed consumer sees every committed event once, in per-key order; no event of a
    rolled-back transaction and no phantom (an event no committed transaction wrote)."""
    expected = writers.committed
    topic = outbox.topic("user")
    msgs = kafka.consume([topic], until=len(expected), timeout=timeout)
    msgs = kafka.consume([topic], timeout=60)  # to the end: duplicates come after the count
    dups, lost, rolled_back, phantoms = tally_writers_events(msgs, writers)
    assert (dups, lost, rolled_back, phantoms) == (0, 0, 0, 0), \
        "%d duplicates, %d lost, %d rolled back, %d phantoms of %d" % (
            dups, lost, rolled_back, phantoms, len(expected))
    return len(msgs)


def committed_past_now(outbox, timeout=30):
    """Waits until the streaming relay committed in Kafka, and confirmed, what is in the WAL now."""
    _, now = slot_lsns(outbox.db, outbox.slot)
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= now, timeout, interval=0.05,
             what="the slot confirmed past %X" % now)


def stop_writers(*sets):
    """Stops writer sets that were started (a failure may come before)."""
    for w in sets:
        if w.threads[0].ident is not None:
            w.stop()


def rows_more(writers, n, timeout=60):
    target = writers.count() + n
    wait_for(lambda: writers.count() >= target, timeout, what="%d more rows written" % n)


def test_kill_9_of_the_active_relay_hands_over_exactly_once(outbox, kafka, pair):
    active, passive = pair
    writers = Writers(outbox.db, outbox)
    takeovers = []
    try:
        active.start()
        active.wait_streaming()
        passive.start()
        passive.wait_log(standing_by(outbox))
        assert holder_pid(outbox) == active.proc.pid
        writers.start()
        for _ in range(3):
            rows_more(writers, 300)
            committed_past_now(outbox)
            mark = len(passive.log())
            killed_at = time.time()
            active.proc.send_signal(signal.SIGKILL)
            active.wait_exit(30)
            passive.wait_log(TOOK_OVER, timeout=30, since=mark)
            took = log_time(first_line_with(passive.log()[mark:], STREAMING)) - killed_at
            takeovers.append(took)
            assert holder_pid(outbox) == passive.proc.pid
            # The killed relay comes back (systemd restarts it) and stands by.
            mark = len(active.log())
            active.start()
            active.wait_log(standing_by(outbox), since=mark)
            rows_more(writers, 100)
            assert STREAMING not in active.log()[mark:]
            active, passive = passive, active
    finally:
        stop_writers(writers)
        print("takeover after kill -9 of the active relay (to the other's first streaming): %s"
              % ", ".join("%.0f ms" % (t * 1000) for t in takeovers))
    n = assert_exactly_once(kafka, outbox, writers)
    print("active/passive: 3 kills, %d committed rows, %d rolled back, %d records read"
          % (len(writers.committed), len(writers.rolled_back), n))
    # Nobody was fenced while streaming: a standby never starts Kafka transactions early.
    assert FENCED_LINE not in active.log() + passive.log()
    assert passive.stop() == 0  # stopped while standing by
    assert active.stop() == 0


def test_a_relay_that_loses_the_slot_stands_by_again(outbox, kafka, pair, request):
    """The active relay is frozen with its walsender blocked writing to it, and the connection
    holding its lock ends (a network cut the server noticed): the passive takes the lock, ends the
    session the frozen relay left on the slot, takes over and fences it. Thawed, the old active
    finds itself fenced (or the lock taken) and stands by again instead of exiting 3
    (outbox_relay_fenced_total counts it); then it takes over once more when the new active is
    killed."""
    from test_metrics import scrape

    _, b = pair
    a, port = relay_with_metrics(outbox, request)
    writers = Writers(outbox.db, outbox)
    try:
        a.start()
        a.wait_streaming()
        b.start()
        b.wait_log(standing_by(outbox))
        writers.start()
        rows_more(writers, 300)
        committed_past_now(outbox)
        mark_a, mark_b = len(a.log()), len(b.log())
        a.proc.send_signal(signal.SIGSTOP)
        try:
            rows_more(writers, 100)  # the frozen relay's open Kafka transaction (if any) grows
            walsender = block_the_walsender(outbox)
            # The lock's connection ends; the walsender stays, blocked on the frozen relay (until
            # wal_sender_timeout, 60 s): the passive must end that session itself, and told to end
            # it may wait on the frozen client again (in ClientWrite) until told once more.
            assert cut_lock_connection(outbox, a.proc.pid) == 1
            b.wait_log(TOOK_OVER, since=mark_b)
            since_cut = b.log()[mark_b:]
            stale = next((line for line in since_cut.splitlines()
                          if "which no longer holds the active/passive lock" in line), None)
            # none: the walsender ended by itself (wal_sender_timeout) before the passive ended it
            assert stale, "the passive took over without ending the stale session:\n" + since_cut[-3000:]
            assert "outbox-relay[%d]@" % a.proc.pid in stale and "backend PID %d)" % walsender in stale
            assert stale.endswith("ending that session"), stale  # not "cannot end that session"
            rows_more(writers, 200)
            committed_past_now(outbox)
        finally:
            a.proc.send_signal(signal.SIGCONT)
        a.wait_log("standing by again", since=mark_a)
        a.wait_log(standing_by(outbox), since=mark_a)
        assert a.proc.poll() is None, "the old active exited:\n" + a.log()[mark_a:][-3000:]
        m = scrape(port)
        assert (m.get("outbox_relay_fenced_total"), m.get("outbox_relay_standby")) == (1, 1)
        assert m.get("outbox_relay_takeovers_total") == 0
        assert holder_pid(outbox) == b.proc.pid
        rows_more(writers, 200)
        committed_past_now(outbox)
        mark_a = len(a.log())
        b.proc.send_signal(signal.SIGKILL)
        b.wait_exit(30)
        a.wait_log(TOOK_OVER, since=mark_a)
        rows_more(writers, 200)
        committed_past_now(outbox)
        m = scrape(port)
        assert (m.get("outbox_relay_fenced_total"), m.get("outbox_relay_takeovers_total")) == (1, 1)
    finally:
        stop_writers(writers)
    assert_exactly_once(kafka, outbox, writers)
    assert a.stop() == 0


def socket_buffers_max():
    """The most one local TCP connection buffers (bytes): its receiver's and its sender's socket
    buffers at their largest (tcp_rmem, tcp_wmem; the receive buffer grows with how fast its
    reader read)."""
    def largest(name):
        with open("/proc/sys/net/ipv4/" + name) as f:
            return int(f.read().split()[2])
    return largest("tcp_rmem") + largest("tcp_wmem")


def block_the_walsender(outbox, pad=16000):
    """Publishes more than the socket of the frozen relay's stream can ever hold, so that its
    walsender waits to write (whatever its buffers grew to); returns the walsender's PID."""
    rows = socket_buffers_max() * 5 // 4 // pad + 1
    outbox.db.execute("SELECT outbox.publish('filler', 'bulk-' || i, 'filler.padded', "
                      "jsonb_build_object('pad', repeat('x', %s))) "
                      "FROM generate_series(1, %s) i", (pad, rows))
    seen = set()

    def blocked():
        seen.add(walsender_wait_event(outbox))
        return "WalSenderWriteData" in seen

    try:
        wait_for(blocked, 30, what="the frozen relay's walsender waiting to write (%d rows of %d bytes)"
                 % (rows, pad))
    except TimeoutError as e:  # None: no walsender on the slot; WalSenderWaitForWAL: all of it was sent
        raise AssertionError("%s; its wait events seen: %s" % (e, sorted(map(str, seen))))
    return outbox.db.query("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                           (outbox.slot,))[0][0]


def cut_lock_connection(outbox, relay_pid):
    """Ends the relay's connection holding the active/passive lock (pg_terminate_backend, as the
    server does when its keepalives find the client gone); returns how many were ended."""
    rows = outbox.db.query(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND a.application_name LIKE %s",
        (STANDBY_LOCK_CLASS, "outbox-relay[%d]@%%" % relay_pid))
    return sum(1 for (ended,) in rows if ended)


def relay_with_metrics(outbox, request):
    """A relay of the pair's settings with metrics on a port of its own: (relay, port); killed
    at the end of the test if still running (its log tail shown on failure)."""
    port = harness.free_port()
    own = outbox.config_path + ".metrics"
    open(own, "w").write(open(outbox.config_path).read().replace(
        WAIT, '%s metrics_listen = ":%d";' % (WAIT, port)))
    r = relayctl.Relay(own, os.path.dirname(outbox.config_path))
    r.log_path = outbox.relay.log_path + ".metrics"
    request.addfinalizer(lambda: relayctl.end_of_test(r, request))
    return r, port


def test_two_relays_started_at_once_one_streams_the_other_stands_by(outbox, kafka, pair):
    """A first start of both at once (no slot, no checkpoint): whichever wins, the other stands by
    (a loser that was fenced or found the slot taken stands by again); then a handover."""
    a, b = pair
    writers = Writers(outbox.db, outbox).start()
    try:
        a.start()
        b.start()

        def settled():
            pid = holder_pid(outbox)
            if pid is None:
                return None
            active, passive = (a, b) if pid == a.proc.pid else (b, a)
            ok = STREAMING in active.log() and standing_by(outbox) in passive.log().split(STREAMING)[-1]
            return (active, passive) if ok else None
        active, passive = wait_for(settled, 40, interval=0.2, what="one relay streaming, one standing by")
        assert a.proc.poll() is None and b.proc.poll() is None
        rows_more(writers, 300)
        committed_past_now(outbox)
        mark = len(passive.log())
        active.proc.send_signal(signal.SIGKILL)
        active.wait_exit(30)
        passive.wait_log(TOOK_OVER, since=mark)
        rows_more(writers, 300)
        committed_past_now(outbox)
    finally:
        stop_writers(writers)
    assert_exactly_once(kafka, outbox, writers)
    assert passive.stop() == 0


def test_a_standby_tells_systemd_and_the_metrics(outbox, kafka, pair):
    """Standing by is a running state: READY=1 with a STATUS naming the active relay, watchdog
    pings while waiting, /readyz 503 "standby"; SIGTERM ends the wait at once (exit 0)."""
    from test_metrics import http_get, scrape
    from test_systemd import FakeSystemd
    import harness

    active, _ = pair
    port = harness.free_port()
    # The same settings with its own metrics port (two relays on one host cannot share it).
    own = outbox.config_path + ".metrics"
    open(own, "w").write(open(outbox.config_path).read().replace(
        WAIT, '%s metrics_listen = ":%d";' % (WAIT, port)))
    passive = relayctl.Relay(own, os.path.dirname(outbox.config_path))
    passive.log_path = outbox.relay.log_path + ".metrics"
    systemd = FakeSystemd()
    try:
        active.start()
        active.wait_streaming()
        passive.env = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"}
        passive.start()
        systemd.wait(lambda m: m == "READY=1", what="READY=1 of the standby")
        status = systemd.messages[systemd.wait(lambda m: m.startswith("STATUS=standby: "), what="STATUS")]
        assert ('slot "%s" is in use by outbox-relay[%d]@' % (outbox.slot, active.proc.pid)) in status
        wait_for(lambda: systemd.poll().count("WATCHDOG=1") >= 3, 10, what="three watchdog pings")
        assert http_get(port, "/readyz")[:2] == (503, "standby\n")
        m = scrape(port)
        assert (m.get("outbox_relay_standby"), m.get("outbox_relay_ready")) == (1, 0)
        stopped_at = time.monotonic()
        assert passive.stop() == 0
        assert time.monotonic() - stopped_at < 2, "SIGTERM was not answered at once"
        assert "STOPPING=1" in systemd.poll()
        assert "stopped while standing by" in passive.log()
        assert holder_pid(outbox) == active.proc.pid  # nobody was fenced
    finally:
        passive.kill()
        systemd.close()
    assert active.stop() == 0


def test_postgres_restart_under_two_relays_is_exactly_once(outbox, kafka, pg, pair):
    """A server restart ends both the active relay's stream and its lock: either relay may be
    the active one afterwards, the other stands by; exactly once throughout."""
    a, b = pair
    before = Writers(outbox.db, outbox)
    after = Writers(outbox.db, outbox, gen=1)  # keys of their own: their order is their own
    try:
        a.start()
        a.wait_streaming()
        b.start()
        b.wait_log(standing_by(outbox))
        before.start()
        rows_more(before, 300)
        committed_past_now(outbox)
        before.stop()  # the writers' connections die with the server
        mark_a, mark_b = len(a.log()), len(b.log())
        pg.restart(mode="immediate")

        def one_active():
            pid = holder_pid(outbox)
            if pid is None:
                return None
            other, since = (b, mark_b) if pid == a.proc.pid else (a, mark_a)
            return standing_by(outbox) in other.log()[since:]
        wait_for(one_active, 40, interval=0.2, what="one relay streaming, the other standing by")
        assert a.proc.poll() is None and b.proc.poll() is None
        after.start()
        rows_more(after, 300)
        committed_past_now(outbox)
    finally:
        stop_writers(before, after)
    after.committed.update(before.committed)
    after.rolled_back.update(before.rolled_back)
    assert_exactly_once(kafka, outbox, after)
    assert a.stop() == 0 and b.stop() == 0


def test_at_least_once_pair_hands_over_without_loss(outbox, kafka, pair):
    """relay.delivery = "at-least-once" (no Kafka transactions, nothing to fence): the lock alone
    decides who streams; after kill -9 of the active one every committed event is there (a
    replay may publish some twice, as at-least-once allows), none rolled back, no phantom."""
    a, b = pair
    outbox.reconfigure(extra_relay=WAIT + ' delivery = "at-least-once";')
    writers = Writers(outbox.db, outbox)
    try:
        a.start()
        a.wait_streaming()
        b.start()
        b.wait_log(standing_by(outbox))
        writers.start()
        rows_more(writers, 300)
        committed_past_now(outbox)
        mark = len(b.log())
        a.proc.send_signal(signal.SIGKILL)
        a.wait_exit(30)
        b.wait_log(TOOK_OVER, since=mark)
        assert "(at-least-once)" in first_line_with(b.log()[mark:], STREAMING)
        rows_more(writers, 300)
        committed_past_now(outbox)
    finally:
        stop_writers(writers)
    topic = outbox.topic("user")
    msgs = kafka.consume([topic], until=len(writers.committed), timeout=120)
    msgs = kafka.consume([topic], timeout=60)
    ids = [dict(m["headers"])["event_id"].decode() for m in msgs]
    assert not set(ids) & writers.rolled_back
    assert set(ids) <= set(writers.committed), "phantom events"
    assert set(writers.committed) <= set(ids), "%d events lost" % len(set(writers.committed) - set(ids))
    assert b.stop() == 0
