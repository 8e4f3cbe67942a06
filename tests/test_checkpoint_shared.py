# Relays sharing one checkpoint topic: another producer's open Kafka transaction there does not hide a relay's newest checkpoint.
"""A read_committed reader of a partition stops at its last stable offset: the first record of the
oldest transaction still open there. Relays share the default checkpoint topic, so another
relay's transaction (or a dead one's, until the broker aborts it) can be open on the partition
that holds this relay's checkpoints, with this relay's newest checkpoints committed after it.

Here a transactional producer of the test stands for that other relay: it writes one record to
every partition of the checkpoint topic and leaves its transaction open. The relay, killed and
started again, must wait for that transaction to end (saying so in one log line) and resume from
its newest checkpoint: a read_committed consumer then sees every event exactly once. Reading only
up to the last stable offset, it resumed from the checkpoint before the open transaction and
published the later events again (docs/exactly-once.md).
"""
import json
import os
import signal
import time
import uuid

import pytest

import relayctl

from events import assert_exactly_once_in_order, consume_events, write_events
from harness import wait_for

CHECKPOINT_TOPIC = "outbox-relay.checkpoints"  # the default, shared by every relay of the broker
WAITING = "an open Kafka transaction"  # the relay's line while one holds its read back


@pytest.fixture(autouse=True)
def shared_checkpoints(outbox):
    """Every relay here keeps its checkpoints in the default topic (other tests' relays have one
    topic each)."""
    reconfigure = outbox.reconfigure
    outbox.reconfigure = lambda **extra: reconfigure(shared_checkpoints=True, **extra)
    outbox.reconfigure()


def leave_transaction_open(kafka, topic):
    """A transactional producer (another relay, to the broker) with one record in every partition
    of topic, its transaction left open: the caller aborts it (or the broker after 90 s, should
    the test die first: long enough for the tests here, short for others sharing the topic)."""
    producer = kafka.producer({"transactional.id": "test-other-relay-" + uuid.uuid4().hex[:8],
                               "transaction.timeout.ms": 90000})
    producer.init_transactions(30)
    producer.begin_transaction()
    for p in kafka.topic_partitions(topic):
        producer.produce(topic, key=b"test-other-relay", value=b"{}", partition=p)
    assert producer.flush(30) == 0, "the open transaction's records were not written"
    return producer


def read_every_event(kafka, outbox, count):
    """Everything a read_committed consumer sees on the event topics once count arrived (to the end,
    so that duplicates after the count are seen too)."""
    msgs = consume_events(kafka, outbox, count)
    return consume_events(kafka, outbox, None, timeout=60) if len(msgs) >= count else msgs


def restart_behind_an_open_transaction(outbox, kafka, end_it_after):
    """Publishes 30 events, leaves another producer's transaction open on the checkpoint topic,
    publishes 30 more, kills the relay (kill -9) and starts it again; once its log (since the
    restart) holds end_it_after, or it streams or exits, aborts the open transaction and waits
    for streaming. Returns (the rows written, the log since the restart as it was then)."""
    relay = outbox.relay
    relay.start()
    relay.wait_streaming()
    rows = write_events(outbox.db, 10, 3)
    assert len(consume_events(kafka, outbox, 30)) == 30  # their checkpoint is committed with them

    other = leave_transaction_open(kafka, CHECKPOINT_TOPIC)
    try:
        # Events published (and checkpoints committed) after the open transaction's first record.
        rows.update(write_events(outbox.db, 10, 3, start=30))
        assert len(consume_events(kafka, outbox, 60)) == 60
        relay.proc.send_signal(signal.SIGKILL)
        relay.wait_exit(30)
        since = len(relay.log())
        relay.start()
        wait_for(lambda: end_it_after in relay.log()[since:] or "streaming from slot" in relay.log()[since:]
                 or relay.proc.poll() is not None, 60, what="the relay logging %r" % end_it_after)
        logged = relay.log()[since:]
    finally:
        other.abort_transaction(30)  # the other relay's transaction ends: the read goes on
    relay.wait_streaming(60)
    rows.update(write_events(outbox.db, 10, 3, start=60))
    return rows, logged


def test_relay_restarting_behind_another_producers_open_checkpoint_transaction_resumes_from_its_newest_checkpoint(
        outbox, kafka):
    rows, logged = restart_behind_an_open_transaction(outbox, kafka, WAITING)
    assert_exactly_once_in_order(read_every_event(kafka, outbox, 90), rows, outbox)
    assert WAITING in logged, "the relay did not say what held its checkpoint read back:\n" + logged[-3000:]
    assert "streaming from slot" not in logged and "no checkpoint for" not in logged
    assert outbox.relay.stop() == 0


def test_an_open_checkpoint_transaction_outlasting_the_checkpoint_timeout_fails_the_start_which_is_retried(
        outbox, kafka):
    rows, logged = restart_behind_an_open_transaction(outbox, kafka, "did not end within 30 s")
    assert_exactly_once_in_order(read_every_event(kafka, outbox, 90), rows, outbox)
    failed = [line for line in logged.splitlines() if "did not end within" in line]
    assert len(failed) == 1 and "offset" in failed[0] and "partition 0" in failed[0], logged[-3000:]
    assert "; retrying in" in failed[0], failed[0]
    assert "streaming from slot" not in logged and "no checkpoint for" not in logged
    assert outbox.relay.stop() == 0


@pytest.mark.skipif(os.system("pkg-config --exists libsystemd") != 0,
                    reason="libsystemd-dev is not installed: the relay is built without sd_notify")
def test_a_relay_held_by_an_open_checkpoint_transaction_after_ready_keeps_pinging_the_watchdog_and_stops_on_sigterm(
        outbox, kafka, request):
    """A standby sends READY=1 before it takes over, so its checkpoint read (held by another
    producer's open transaction) runs under the watchdog: WATCHDOG=1 keeps coming while it waits,
    and SIGTERM ends the wait at once with exit 0."""
    from test_active_passive import WAIT, standing_by
    from test_systemd import FakeSystemd

    outbox.reconfigure(extra_relay=WAIT)
    active = outbox.relay
    passive = relayctl.Relay(outbox.config_path, os.path.dirname(outbox.config_path))
    passive.log_path = outbox.relay.log_path + ".passive"
    systemd, other = FakeSystemd(), None
    try:
        active.start()
        active.wait_streaming()
        # WatchdogSec=4s: a ping at most every 2 s; systemd would abort after 4 s without one.
        passive.env = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "4000000"}
        passive.start()
        systemd.wait(lambda m: m == "READY=1", what="READY=1 of the standby")
        passive.wait_log(standing_by(outbox))
        other = leave_transaction_open(kafka, CHECKPOINT_TOPIC)
        active.proc.send_signal(signal.SIGKILL)
        active.wait_exit(30)
        passive.wait_log(WAITING, timeout=60)
        assert passive.proc.poll() is None, passive.log()[-3000:]
        pings = systemd.poll().count("WATCHDOG=1")
        wait_for(lambda: systemd.poll().count("WATCHDOG=1") >= pings + 4, 12,
                 what="four watchdog pings while the read is held")
        assert WAITING in passive.log() and "streaming from slot" not in passive.log()
        stopped_at = time.monotonic()
        assert passive.stop(timeout=30) == 0
        assert time.monotonic() - stopped_at < 3, "SIGTERM was not answered during the wait"
        assert "stop requested while reading the checkpoint" in passive.log()
    finally:
        if other is not None:
            other.abort_transaction(30)
        relayctl.end_of_test(passive, request)
        systemd.close()


def test_status_behind_an_open_checkpoint_transaction_answers_within_seconds_with_the_checkpoint_before_it_and_says_so(
        outbox, kafka):
    def relay_status(config_path):  # one answer, whole or not (relayctl.newest_status waits)
        code, out = relayctl.run_once(["status", config_path, "--json"], timeout=120)
        assert code == 0, out
        return json.loads(out)

    relay = outbox.relay
    relay.start()
    relay.wait_streaming()
    write_events(outbox.db, 10, 3)
    assert len(consume_events(kafka, outbox, 30)) == 30
    other = leave_transaction_open(kafka, CHECKPOINT_TOPIC)
    try:
        write_events(outbox.db, 10, 3, start=30)  # their checkpoint comes after the open transaction
        assert len(consume_events(kafka, outbox, 60)) == 60
        asked_at = time.monotonic()
        held = relay_status(outbox.config_path)
        took = time.monotonic() - asked_at
    finally:
        other.abort_transaction(30)
    assert took < 10, "status waited %.1f s for the open transaction" % took
    assert held.get("checkpoint_lsn"), held
    assert held.get("checkpoint_incomplete", "").startswith("an open transaction at offset "), held
    assert held["checkpoint_incomplete"].endswith(" of partition 0"), held
    assert "checkpoint_error" not in held, held
    whole = wait_for(lambda: (lambda st: st if "checkpoint_incomplete" not in st else None)(
        relay_status(outbox.config_path)), 30, interval=1, what="a status read to the end")
    assert lsn_value(whole["checkpoint_lsn"]) > lsn_value(held["checkpoint_lsn"]), (held, whole)
    assert relay.stop() == 0


def lsn_value(text):
    """An LSN's text ("0/16B3748") as a number."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)
