# test_server_faults.py: the server side going wrong: slot busy, slot invalidated, database unreachable at start.
import re
import signal

import psycopg2
import psycopg2.extras

import harness
import relayctl
from harness import free_port, wait_for


def test_slot_in_use_by_another_process_is_retried_until_free(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    assert outbox.relay.stop() == 0
    # Another consumer holds the slot (as pg_recvlogical would).
    holder = psycopg2.connect(outbox.db.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        cur = holder.cursor()
        cur.start_replication(slot_name=outbox.slot, decode=False)
        wait_for(lambda: outbox.db.query("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                                         (outbox.slot,))[0][0], 30, what="slot active")
        mark = len(outbox.relay.log())
        outbox.relay.start()
        outbox.relay.wait_log('replication slot "%s" is in use by PID' % outbox.slot, timeout=60, since=mark)
        assert outbox.relay.proc.poll() is None
    finally:
        holder.close()
    outbox.relay.wait_streaming(timeout=90)
    outbox.db.execute("SELECT outbox.publish('user', 'u-1', 'Registered', '{}')")
    assert len(kafka.consume(outbox.topic("user"), until=1, timeout=60)) == 1
    assert outbox.relay.stop() == 0


def test_invalidated_slot_is_refused_with_one_clear_line(kafka, tmp_path):
    """max_slot_wal_keep_size let the server remove WAL the slot still needed: changes were lost
    to it, so the relay refuses (it cannot know what it missed) and says what to do."""
    server = harness.Postgres(extra_settings={"max_slot_wal_keep_size": "1MB", "max_wal_size": "32MB",
                                              "min_wal_size": "32MB"})
    try:
        server.start()
        db = server.create_database("t_slot_lost")
        relayctl.install_outbox(db)
        db.execute("SELECT pg_create_logical_replication_slot('relay_lost', 'wal2json')")
        db.execute("CREATE TABLE filler (x text)")
        for _ in range(6):  # about 8 MB of WAL each time, then a new segment
            db.execute("INSERT INTO filler SELECT repeat('y', 200) FROM generate_series(1, 30000)")
            db.execute("SELECT pg_switch_wal()")

        def lost():
            db.execute("CHECKPOINT")  # invalidation happens at checkpoints
            return db.query("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'relay_lost'")[0][0] == "lost"
        wait_for(lost, 60, what="slot invalidated")
        conf = str(tmp_path / "relay.conf")
        relayctl.write_config(conf, db.dsn, kafka.bootstrap, "relay_lost", "t_lost.${aggregate_type}")
        code, errors = relayctl.run_to_exit(conf, str(tmp_path))
        assert code == 1 and len(errors) == 1, errors
        assert 'replication slot "relay_lost" was invalidated (its WAL was removed)' in errors[0]
        assert "drop the slot and start again" in errors[0]
    finally:
        server.cleanup()


def test_database_unreachable_at_start_is_retried_and_logged(outbox, kafka):
    conf = open(outbox.config_path).read()
    port = free_port()
    conf = re.sub(r"port=\d+", "port=%d" % port, conf)
    open(outbox.config_path, "w").write(conf)
    outbox.relay.start()
    outbox.relay.wait_log("Connection refused", timeout=60)
    outbox.relay.wait_log("retrying in", timeout=60)
    assert outbox.relay.proc.poll() is None
    assert outbox.relay.stop(signal.SIGTERM) == 0
