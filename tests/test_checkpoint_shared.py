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
import signal
import uuid

from events import assert_exactly_once_in_order, consume_events, write_events
from harness import wait_for

CHECKPOINT_TOPIC = "outbox-relay.checkpoints"  # the default, shared by every relay of the broker
WAITING = "an open Kafka transaction"  # the relay's line while one holds its read back


def leave_transaction_open(kafka, topic):
    """A transactional producer (another relay, to the broker) with one record in every partition
    of topic, its transaction left open: the caller aborts it (or the broker after 5 minutes)."""
    producer = kafka.producer({"transactional.id": "test-other-relay-" + uuid.uuid4().hex[:8],
                               "transaction.timeout.ms": 300000})
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


def test_relay_restarting_behind_another_producers_open_checkpoint_transaction_resumes_from_its_newest_checkpoint(
        outbox, kafka):
    relay = outbox.relay
    relay.start()
    relay.wait_streaming()
    rows = write_events(outbox.db, 10, 3)
    assert len(consume_events(kafka, outbox, 30)) == 30  # their checkpoint is committed with them

    other = leave_transaction_open(kafka, CHECKPOINT_TOPIC)
    open_txn = True
    try:
        # Events published (and checkpoints committed) after the open transaction's first record.
        rows.update(write_events(outbox.db, 10, 3, start=30))
        assert len(consume_events(kafka, outbox, 60)) == 60
        relay.proc.send_signal(signal.SIGKILL)
        relay.wait_exit(30)

        since = len(relay.log())
        relay.start()
        # The relay waits for the open transaction (new code) or goes on at once (old code).
        wait_for(lambda: WAITING in relay.log()[since:] or "streaming from slot" in relay.log()[since:]
                 or relay.proc.poll() is not None, 60, what="the relay waiting or streaming")
        waited = WAITING in relay.log()[since:]
        other.abort_transaction(30)  # the other relay's transaction ends: the read goes on
        open_txn = False
        relay.wait_streaming(60)
    finally:
        if open_txn:
            other.abort_transaction(30)

    rows.update(write_events(outbox.db, 10, 3, start=60))
    assert_exactly_once_in_order(read_every_event(kafka, outbox, 90), rows, outbox)
    assert waited, "the relay did not say what held its checkpoint read back:\n" + relay.log()[since:][-3000:]
    assert "no checkpoint for" not in relay.log()[since:]
    assert relay.stop() == 0
