# Fault injection with librdkafka's mock cluster (tests/faults/mock_kafka.c): commit errors a real
# broker does not produce on demand, retries, and a broker outage.
#
# The mock cluster does not fence zombies, writes no transaction markers and ignores
# read_committed: aborted records stay visible and a restarted relay would read the checkpoint of
# an aborted transaction. So these tests prove the error paths only: an abortable or fatal commit
# error leads to a replay or an exit, never to a confirmed LSN without its records. Exactly-once
# delivery itself needs a real broker (the other integration tests).
import json
import os
import select
import subprocess
import time
import uuid

import pytest

from harness import REPO_ROOT, wait_for
import relayctl

MOCK_BIN = os.environ.get("MOCK_KAFKA_BIN", os.path.join(REPO_ROOT, "build", "rel", "mock_kafka"))

# Kafka protocol ApiKeys of the requests the faults are injected into.
PRODUCE = 0
ADD_PARTITIONS_TO_TXN = 24
END_TXN = 26
BROKER = 1  # the mock cluster's only broker

AGGREGATES = ["user", "document", "liveness"]
PARTITIONS = 3
# Long enough that no idle checkpoint commits in the middle of a case, so the next EndTxn after
# the first commit is the one carrying the test's rows (the server still gets replies to its
# keepalives, and wal_sender_timeout is 60 s).
QUIET_STATUS_MS = 30000
# librdkafka's debug line (kafka debug = "eos") for each successful EndTxn(commit).
COMMITTED = "Transaction successfully committed"
# The relay's lines for an abortable commit error and for the following replay.
ABORTING = "Kafka transaction must be aborted"
REPLAYING = "reading again from the last confirmed position"
# What pg_current_wal_lsn() may be ahead of the end of the last commit record.
WAL_SLACK = 1024


class MockKafka:
    """One mock_kafka process: a librdkafka mock cluster controlled line by line."""

    def __init__(self, workdir, brokers=1):
        self.log_path = os.path.join(workdir, "mock_kafka.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([MOCK_BIN, str(brokers)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log)
        self._buf = b""
        line = self._readline(10)
        assert line.startswith("BOOTSTRAP="), line
        self.bootstrap = line.split("=", 1)[1]

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("mock_kafka did not answer in %s s" % timeout)
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError("mock_kafka exited (%s): %s" % (self.proc.poll(), self.log()))
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, line):
        """Sends one command; returns what follows "OK" (fails the test on "ERR")."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        answer = self._readline(10)
        assert answer.startswith("OK"), "mock_kafka %r: %s" % (line, answer)
        return answer[2:].strip()

    def pending(self, api_key, broker=BROKER):
        """How many errors pushed with broker_errors were not yet returned."""
        return int(self.cmd("pending %d %d" % (broker, api_key)))

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        """Ends the cluster (EOF on stdin); returns the exit code."""
        self.proc.stdin.close()
        if self.proc.poll() is None:
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("mock_kafka did not exit at EOF")
        self.proc.stdout.close()
        return self.proc.returncode

    def consume(self, topics, until, timeout=60):
        """Reads the topics from the beginning (aborted records included: the mock keeps them)
        until until(messages) is true and every partition was read to its end, or fails after
        timeout; returns [(topic, event_id), ...]."""
        from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": "faults-" + uuid.uuid4().hex,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 100,
            "log_level": 0,
            "error_cb": lambda err: None,
        })
        assignment = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(PARTITIONS)]
        consumer.assign(assignment)
        messages = []
        at_end = set()
        try:
            def done():
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    at_end.discard((msg.topic(), msg.partition()))
                    messages.append((msg.topic(), dict(msg.headers() or [])["event_id"].decode()))
                elif msg is not None and msg.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add((msg.topic(), msg.partition()))
                elif msg is not None:
                    assert not msg.error().fatal(), msg.error()
                return len(at_end) == len(assignment) and until(messages)
            wait_for(done, timeout, interval=0, what="records in %s" % ", ".join(topics))
        finally:
            consumer.close()
        return messages


def write_events(db, transactions, per_txn, start=0):
    """Commits `transactions` transactions of `per_txn` outbox rows; returns the event ids in order."""
    conn = db.connect(autocommit=False)
    ids = []
    try:
        cur = conn.cursor()
        seq = start
        for _ in range(transactions):
            for _ in range(per_txn):
                agg = AGGREGATES[seq % len(AGGREGATES)]
                cur.execute("SELECT outbox.publish(%s, %s, 'Changed', %s::jsonb)",
                            (agg, "%s-%d" % (agg, seq % 7), json.dumps({"seq": seq})))
                ids.append(str(cur.fetchone()[0]))
                seq += 1
            conn.commit()
    finally:
        conn.close()
    return ids


def wal_lsn(db):
    return int(db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0])


def confirmed_lsn(db, slot):
    """The slot's confirmed_flush_lsn as a number (0 before the slot exists)."""
    r = db.query("SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s",
                 (slot,))
    return int(r[0][0]) if r and r[0][0] is not None else 0


def fmt_lsn(n):
    return "%X/%X" % (n >> 32, n & 0xFFFFFFFF)


@pytest.fixture
def faulty(db, tmp_path, request):
    """A database with the outbox schema, a mock cluster with the relay's topics, and a relay
    configured for both (not started; kafka debug = "eos" so that commits show in its log).

    Yields an object with .db, .slot, .mock (MockKafka), .relay (relayctl.Relay), .topics and
    .configure(status_interval_ms, extra_kafka=""). Stops the relay, then the mock cluster.
    """
    class Faulty:
        pass

    f = Faulty()
    f.db = db
    f.slot = "relay_" + uuid.uuid4().hex[:10]
    prefix = "f" + uuid.uuid4().hex[:10]
    f.topics = ["%s.%s" % (prefix, a) for a in AGGREGATES]
    f.mock = MockKafka(str(tmp_path))
    f.relay = None
    try:
        # The mock has no CreateTopics: the relay would wait for its checkpoint topic forever.
        f.mock.cmd("topic %s 1" % relayctl.checkpoint_topic(f.slot))
        for t in f.topics:
            f.mock.cmd("topic %s %d" % (t, PARTITIONS))
        config_path = str(tmp_path / "relay.conf")

        def configure(status_interval_ms, extra_kafka=""):
            relayctl.write_config(config_path, db.dsn, f.mock.bootstrap, f.slot, prefix + ".${aggregate_type}",
                                  extra_kafka='debug = "eos";\n  ' + extra_kafka)
            with open(config_path) as c:
                text = c.read()
            assert "status_interval_ms = 1000;" in text, text
            with open(config_path, "w") as c:
                c.write(text.replace("status_interval_ms = 1000;", "status_interval_ms = %d;" % status_interval_ms))

        f.configure = configure
        relayctl.install_outbox(db)
        configure(status_interval_ms=QUIET_STATUS_MS)
        f.relay = relayctl.Relay(config_path, str(tmp_path))
        yield f
    finally:
        if f.relay is not None:
            f.relay.kill()
        code = f.mock.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            if f.relay is not None:
                lines = [l for l in f.relay.log().splitlines() if " debug kafka: " not in l and not l.startswith("%7|")]
                print("---- relay log without librdkafka's debug lines (tail)\n" + "\n".join(lines[-80:]))
            print("---- mock_kafka log (tail)\n" + f.mock.log()[-3000:])
    assert code == 0, "mock_kafka exited with %s" % code


def start_until_first_commit(f):
    """Starts the relay and waits for its first (idle checkpoint) commit; returns the log offset after it."""
    f.relay.start()
    f.relay.wait_streaming()
    log = f.relay.wait_log(COMMITTED)
    return log.index(COMMITTED) + len(COMMITTED)


def watch_slot(f, held_at, may_pass, until, timeout, what):
    """Waits until until(log) is true while checking the slot: confirmed_flush_lsn may pass held_at
    only once may_pass(log) is true. The slot is read before the log, so a commit that let it move
    is always in the log read after it."""
    def check():
        confirmed = confirmed_lsn(f.db, f.slot)
        log = f.relay.log()
        if confirmed > held_at:
            assert may_pass(log), ("slot confirmed %s, past %s, before Kafka committed the records "
                                   "after it:\n%s" % (fmt_lsn(confirmed), fmt_lsn(held_at), log[-4000:]))
        return until(log)
    wait_for(check, timeout, interval=0.05, what=what)


def all_delivered(ids):
    wanted = set(ids)
    return lambda messages: wanted <= {event_id for _, event_id in messages}


def replayed_and_committed(mark):
    """may_pass for watch_slot: the relay logged its replay, and a commit followed it."""
    def check(log):
        at = log.find(REPLAYING, mark)
        return at >= 0 and log.find(COMMITTED, at) >= 0
    return check


@pytest.mark.parametrize("api_key,error", [
    # librdkafka 2.0.2, rd_kafka_txn_handle_EndTxn: abortable, and the abort bumps the epoch.
    (END_TXN, "UNKNOWN_PRODUCER_ID"),
    # not listed there: every such error is abortable; aborted with EndTxn(abort).
    (END_TXN, "KAFKA_STORAGE_ERROR"),
    # rd_kafka_txn_handle_AddPartitionsToTxn: partition-level, abortable. Answered after 500 ms,
    # so it arrives while the relay waits in commit_transaction. (TOPIC_AUTHORIZATION_FAILED is
    # abortable for librdkafka too, but no replay helps: see the test after this one.)
    (ADD_PARTITIONS_TO_TXN, "UNKNOWN_PRODUCER_ID@500"),
], ids=["EndTxn-UNKNOWN_PRODUCER_ID", "EndTxn-KAFKA_STORAGE_ERROR",
        "AddPartitionsToTxn-UNKNOWN_PRODUCER_ID"])
def test_abortable_commit_error_replays_and_holds_the_slot(faulty, api_key, error):
    f = faulty
    mark = start_until_first_commit(f)
    held_at = wal_lsn(f.db)
    assert confirmed_lsn(f.db, f.slot) <= held_at
    # No idle checkpoint for 30 s: the next transaction is the one with the rows below.
    f.mock.cmd("broker_errors %d %d %s" % (BROKER, api_key, error))
    ids = write_events(f.db, transactions=10, per_txn=5)
    end = wal_lsn(f.db)
    # The slot stays at or before the rows until a commit after the replay; then it reaches them.
    watch_slot(f, held_at, replayed_and_committed(mark),
               until=lambda log: confirmed_lsn(f.db, f.slot) >= end - WAL_SLACK or f.relay.proc.poll() is not None,
               timeout=60, what="slot past the replayed rows")
    assert f.relay.proc.poll() is None, "relay exited:\n" + f.relay.log()[mark:][-3000:]
    log = f.relay.log()[mark:]
    assert "%s: commit_transaction" % ABORTING in log
    assert log.count(REPLAYING) == 1
    assert f.mock.pending(api_key) == 0
    # Read again and produced again: every event is in Kafka. A failed EndTxn leaves the aborted
    # copies too (the mock writes no abort markers); a failed AddPartitionsToTxn sent nothing.
    messages = f.mock.consume(f.topics, all_delivered(ids))
    assert len(messages) > len(ids) if api_key == END_TXN else len(messages) >= len(ids)
    assert f.relay.stop() == 0


def test_topic_authorization_refused_at_commit_stops_without_confirming(faulty):
    """An authorization refusal is abortable for librdkafka, but a replay meets the same ACL (on
    a real broker the abort after it then fails with INVALID_TXN_STATE; tests/test_kafka_auth.py):
    the relay stops at once naming the missing ACL, and the slot stays before the rows."""
    f = faulty
    mark = start_until_first_commit(f)
    held_at = wal_lsn(f.db)
    f.mock.cmd("broker_errors %d %d TOPIC_AUTHORIZATION_FAILED@500" % (BROKER, ADD_PARTITIONS_TO_TXN))
    write_events(f.db, transactions=10, per_txn=5)
    assert f.relay.wait_exit(60) == 1
    log = f.relay.log()[mark:]
    assert "needs an ACL allowing WRITE and DESCRIBE on the topic" in log
    assert REPLAYING not in log
    assert confirmed_lsn(f.db, f.slot) <= held_at


@pytest.mark.parametrize("api_key,error", [
    (END_TXN, "PRODUCER_FENCED"),
    (END_TXN, "INVALID_PRODUCER_EPOCH"),
    (END_TXN, "INVALID_TXN_STATE"),
    # answered after 500 ms: arrives while the relay waits in commit_transaction
    (ADD_PARTITIONS_TO_TXN, "INVALID_PRODUCER_EPOCH@500"),
], ids=["EndTxn-PRODUCER_FENCED", "EndTxn-INVALID_PRODUCER_EPOCH", "EndTxn-INVALID_TXN_STATE",
        "AddPartitionsToTxn-INVALID_PRODUCER_EPOCH"])
def test_fatal_transaction_error_exits_without_confirming(faulty, api_key, error):
    f = faulty
    mark = start_until_first_commit(f)
    held_at = wal_lsn(f.db)
    # librdkafka 2.0.2: fatal for EndTxn and AddPartitionsToTxn alike (the two fencing errors
    # become _FENCED): the producer cannot go on, the relay must exit.
    f.mock.cmd("broker_errors %d %d %s" % (BROKER, api_key, error))
    write_events(f.db, transactions=10, per_txn=5)
    watch_slot(f, held_at, may_pass=lambda log: False, until=lambda log: f.relay.proc.poll() is not None,
               timeout=60, what="relay exit")
    # Exit 3 for a fencing (a newer relay took over: systemd must not restart this one), else 1.
    assert f.relay.wait_exit() == (3 if "FENCED" in error or "EPOCH" in error else 1)
    # It confirms what Kafka committed before leaving: nothing of these rows.
    assert confirmed_lsn(f.db, f.slot) <= held_at
    log = f.relay.log()[mark:]
    assert f.mock.pending(api_key) == 0
    # One event, one error line: the relay's own; librdkafka's lines of it stay at debug.
    assert "debug kafka: fatal error: " in log  # librdkafka's reason
    assert "error kafka: " not in log
    assert "error Kafka transaction failed for good: commit_transaction: " in log
    if error != "INVALID_TXN_STATE":
        assert "fenced by a newer instance (another relay with the same transactional.id took over)" in log
    assert REPLAYING not in log


def test_fenced_relay_with_takeover_wait_stands_by_again(faulty, registry, tmp_path):
    """relay.takeover = "wait" (active/passive): a fencing is no exit 3 but a return to standby,
    confirming nothing of the fenced transaction; with no other relay active the relay takes the
    slot again at once, with a fresh producer (what it then reads from the mock's checkpoint
    topic is the mock's: it keeps aborted records) and a fresh pipeline, started again (an Avro
    source's start-time schema check runs again)."""
    f = faulty
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    (schemas / "Probe.avsc").write_text('{"type": "record", "name": "Probe", "fields": []}')
    text = open(f.relay.config_path).read()
    text = text.replace("shutdown_timeout_ms = 20000;", 'shutdown_timeout_ms = 20000; takeover = "wait";')
    text = text.replace("sources = ( ", 'sources = ( { message_prefix = "avro_probe"; format = "avro"; '
                        'topic = "avro_probe"; }, ', 1)
    text += 'schema_registry = { url = "%s"; schema_dir = "%s"; };\n' % (registry.url, schemas)
    open(f.relay.config_path, "w").write(text)
    mark = start_until_first_commit(f)
    held_at = wal_lsn(f.db)
    f.mock.cmd("broker_errors %d %d PRODUCER_FENCED" % (BROKER, END_TXN))
    write_events(f.db, transactions=10, per_txn=5)
    standing_by = "with the same transactional.id took over slot"
    watch_slot(f, held_at, may_pass=lambda log: False,
               until=lambda log: standing_by in log[mark:] or f.relay.proc.poll() is not None,
               timeout=60, what="the relay standing by again")
    assert f.relay.proc.poll() is None, "relay exited:\n" + f.relay.log()[mark:][-3000:]
    after = f.relay.log().index(standing_by, mark)
    f.relay.wait_log("streaming from slot", since=after)
    log = f.relay.log()[mark:]
    assert f.mock.pending(END_TXN) == 0
    assert "warn  Kafka transaction not committed: commit_transaction: " in log
    assert "(another relay with the same transactional.id took over: standing by)" in log
    assert "error Kafka transaction failed for good" not in log
    assert f.relay.log().count("Avro: 1 schema files checked at start") == 2
    assert f.relay.stop() == 0


def test_retriable_commit_errors_are_retried_without_replay(faulty):
    f = faulty
    mark = start_until_first_commit(f)
    errors = ["COORDINATOR_NOT_AVAILABLE", "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
              "CONCURRENT_TRANSACTIONS"]
    # librdkafka 2.0.2 retries these for EndTxn by itself (NOT_COORDINATOR and
    # COORDINATOR_NOT_AVAILABLE after looking the coordinator up again).
    f.mock.cmd("broker_errors %d %d %s" % (BROKER, END_TXN, " ".join(errors)))
    ids = write_events(f.db, transactions=10, per_txn=5)
    end = wal_lsn(f.db)
    wait_for(lambda: confirmed_lsn(f.db, f.slot) >= end - WAL_SLACK or f.relay.proc.poll() is not None,
             60, what="slot past the rows")
    assert f.relay.proc.poll() is None, "relay exited:\n" + f.relay.log()[mark:][-3000:]
    log = f.relay.log()[mark:]
    for e in errors:
        assert "EndTxn returned %s in state CommittingTransaction" % e in log
    assert f.mock.pending(END_TXN) == 0
    for line in (ABORTING, REPLAYING, "failed for good", "Kafka producer failed", "did not take"):
        assert line not in log
    # Nothing produced twice: each event once (the mock would keep an aborted copy).
    messages = f.mock.consume(f.topics, all_delivered(ids))
    assert sorted(event_id for _, event_id in messages) == sorted(ids)
    assert f.relay.stop() == 0


class ExitedOnAbortableError(AssertionError):
    """The relay exited where an abortable transaction error called for a replay."""


# Once librdkafka put the transaction in its abortable state, producev() returns _STATE: the
# relay must abort and read again (it used to exit, or try to dead-letter the row).
def test_abortable_error_while_producing_a_backlog_replays(faulty):
    f = faulty
    start_until_first_commit(f)
    # Publish to every partition once, so that the producer knows the leaders and registers the
    # partitions of a new transaction right away (AddPartitionsToTxn), not only at commit time.
    write_events(f.db, transactions=1, per_txn=30)
    primed = wal_lsn(f.db)
    wait_for(lambda: confirmed_lsn(f.db, f.slot) >= primed - WAL_SLACK, 30, what="slot past the first rows")
    mark = len(f.relay.log())
    # Hold the relay in its next commit for 3 s (EndTxn answered late): meanwhile a large
    # transaction is decoded and waits unread, so afterwards the relay produces a backlog.
    f.mock.cmd("broker_errors %d %d NO_ERROR@3000" % (BROKER, END_TXN))
    write_events(f.db, transactions=1, per_txn=5, start=1000)
    wait_for(lambda: f.mock.pending(END_TXN) == 0, 30, what="the relay waiting for EndTxn")
    held_at = wal_lsn(f.db)
    f.mock.cmd("broker_errors %d %d TOPIC_AUTHORIZATION_FAILED" % (BROKER, ADD_PARTITIONS_TO_TXN))
    f.db.execute("INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
                 "SELECT 'user', 'user-' || (i % 50), 'Bulk', jsonb_build_object('seq', i) "
                 "FROM generate_series(1, 45000) i")
    end = wal_lsn(f.db)
    watch_slot(f, held_at, replayed_and_committed(mark),
               until=lambda log: confirmed_lsn(f.db, f.slot) >= end - WAL_SLACK or f.relay.proc.poll() is not None,
               timeout=90, what="slot past the replayed rows")
    if f.relay.proc.poll() is not None:
        log = f.relay.log()[mark:]
        assert f.relay.wait_exit() == 1
        assert confirmed_lsn(f.db, f.slot) <= held_at  # the exit itself is safe
        if "Local: Erroneous state" in log:  # RD_KAFKA_RESP_ERR__STATE from rd_kafka_producev()
            raise ExitedOnAbortableError("relay exited instead of replaying:\n" + "\n".join(
                l for l in log.splitlines() if " error " in l or " warn " in l)[-3000:])
        raise AssertionError("relay exited:\n" + log[-3000:])
    assert f.mock.pending(ADD_PARTITIONS_TO_TXN) == 0
    assert REPLAYING in f.relay.log()[mark:]
    assert f.relay.stop() == 0


def reply_time(db, slot):
    """When the server last got a status message on the slot's connection (None if inactive)."""
    r = db.query("SELECT r.reply_time FROM pg_replication_slots s JOIN pg_stat_replication r "
                 "ON r.pid = s.active_pid WHERE s.slot_name = %s", (slot,))
    return r[0][0] if r else None


def test_broker_down_for_a_while_keeps_postgres_answered(faulty, pg):
    f = faulty
    # Status messages must keep flowing while Kafka is unreachable, or the server drops the
    # connection after wal_sender_timeout.
    # Reconnect at least every second once the broker is back (librdkafka's default: 10 s).
    f.configure(status_interval_ms=1000, extra_kafka="reconnect_backoff_max_ms = 1000;")
    pg.execute("ALTER SYSTEM SET wal_sender_timeout = '3s'")
    pg.execute("SELECT pg_reload_conf()")
    try:
        check_broker_down_for_a_while(f)
    finally:
        pg.execute("ALTER SYSTEM RESET wal_sender_timeout")
        pg.execute("SELECT pg_reload_conf()")
    assert "replication connection lost" not in f.relay.log()
    assert f.relay.stop() == 0


def test_sequence_desynchronization_exits_without_confirming(faulty):
    """librdkafka before 2.3.0 (#4438) could raise a fatal "sequence desynchronization" error
    after a possibly persisted write (a timeout, a lost connection) when the broker then answered
    OUT_OF_ORDER_SEQUENCE_NUMBER. Provoked here by that answer to the first Produce of a
    transaction: the producer cannot go on, the relay exits 1 (systemd starts it again, whose
    init_transactions aborts the open transaction) and confirms none of these rows."""
    f = faulty
    mark = start_until_first_commit(f)
    held_at = wal_lsn(f.db)
    f.mock.cmd("broker_errors %d %d OUT_OF_ORDER_SEQUENCE_NUMBER" % (BROKER, PRODUCE))
    write_events(f.db, transactions=10, per_txn=5)
    watch_slot(f, held_at, may_pass=lambda log: False, until=lambda log: f.relay.proc.poll() is not None,
               timeout=60, what="relay exit")
    assert f.relay.wait_exit() == 1
    assert confirmed_lsn(f.db, f.slot) <= held_at
    # One error line, the relay's, with librdkafka's reason; the failed records' own lines and
    # librdkafka's stay at debug.
    own = [l for l in f.relay.log()[mark:].splitlines() if l.split(" ")[1:2] == ["error"]]
    assert len(own) == 1, own
    assert "Kafka transaction failed for good: " in own[0] and "sequence desynchronization" in own[0], own


def test_a_transaction_call_waiting_half_the_transaction_timeout_says_so_once(faulty, pg):
    """A commit that waits (the broker is down; or librdkafka 2.0.2's metadata request stuck on an
    unreachable broker, #4970, fixed in 2.10.0) gets one warning at half of
    transaction.timeout.ms that names what to do; the slot holds and nothing is lost."""
    f = faulty
    # 10 s: the warning comes after 5 s of the 9 s outage (message.timeout.ms follows it).
    f.configure(status_interval_ms=1000,
                extra_kafka='reconnect_backoff_max_ms = 1000;\n  transaction_timeout_ms = 10000;')
    check_broker_down_for_a_while(f)
    warnings = [l for l in f.relay.log().splitlines() if "Kafka transaction call waiting for" in l]
    assert len(warnings) == 1, warnings
    assert " warn " in warnings[0] and "the slot holds, nothing is lost" in warnings[0]
    assert "restart the relay" in warnings[0]
    assert f.relay.stop() == 0


def check_broker_down_for_a_while(f):
    f.relay.start()
    f.relay.wait_streaming()
    ids = write_events(f.db, transactions=5, per_txn=2)
    f.mock.consume(f.topics, all_delivered(ids))
    caught_up = wal_lsn(f.db)
    wait_for(lambda: confirmed_lsn(f.db, f.slot) >= caught_up - WAL_SLACK, 30, what="slot caught up")
    mark = len(f.relay.log())
    f.mock.cmd("broker_down %d" % BROKER)
    try:
        # Idle checkpoints may have committed up to here; nothing after it can be committed.
        held_at = wal_lsn(f.db)
        ids += write_events(f.db, transactions=20, per_txn=5, start=100)
        down_at = reply_time(f.db, f.slot)
        # Three times wal_sender_timeout without Kafka: the server keeps getting replies, the
        # slot stays before the new rows, the relay keeps running.

        def outage_over(log):
            assert f.relay.proc.poll() is None, "relay exited:\n" + log[-3000:]
            replied = reply_time(f.db, f.slot)
            assert replied is not None, "the replication connection is gone:\n" + log[-3000:]
            return (replied - down_at).total_seconds() >= 9
        watch_slot(f, held_at, may_pass=lambda log: False, until=outage_over, timeout=30,
                   what="9 s of status replies while the broker is down")
        assert "Connection refused" in f.relay.log()[mark:]  # librdkafka noticed
    finally:
        f.mock.cmd("broker_up %d" % BROKER)
    f.mock.consume(f.topics, all_delivered(ids), timeout=90)
    end = wal_lsn(f.db)
    wait_for(lambda: confirmed_lsn(f.db, f.slot) >= end - WAL_SLACK, 60, what="slot past the rows")
    assert f.relay.proc.poll() is None


INIT_PRODUCER_ID = 22


def test_broker_too_old_for_transactions_is_one_clear_error(faulty):
    """A broker without InitProducerId (before Kafka 0.11, or with it turned off; the mock
    cluster offers no version of it): exactly-once cannot start; one line says so; exit 1,
    nothing confirmed."""
    faulty.mock.cmd("apiversion %d -1 -1" % INIT_PRODUCER_ID)
    faulty.mock.cmd("apiversion %d -1 -1" % ADD_PARTITIONS_TO_TXN)
    faulty.relay.start()
    assert faulty.relay.wait_exit(90) == 1
    own = [l for l in faulty.relay.log().splitlines() if " error " in l and " kafka: " not in l]
    assert any("init_transactions: Transactions not supported" in l and "0.11" in l for l in own), own
    assert confirmed_lsn(faulty.db, faulty.slot) == 0
