# Integration tests: the relay between a real PostgreSQL 15 (wal2json) and a real Kafka broker.
import json
import os
import signal
import subprocess
import threading
import time

import psycopg2
import pytest

from harness import wait_for
import relayctl

from events import (AGGREGATES, assert_exactly_once_in_order, consume_events, murmur2_partition,
                    slot_lsns, write_events)


def test_many_transactions_exactly_once_in_order(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=300, per_txn=5)
    msgs = consume_events(kafka, outbox, len(rows))
    assert_exactly_once_in_order(msgs, rows, outbox)
    # Same partition as the Java client for the same key (murmur2).
    parts = len(kafka.topic_partitions(outbox.topic("user")))
    for m in msgs[:200]:
        assert m["partition"] == murmur2_partition(m["key"], parts)
    assert outbox.relay.stop() == 0


def test_large_transaction_of_100k_rows(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute(
        "INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'user', 'user-' || (i % 50), 'Bulk', jsonb_build_object('seq', i) "
        "FROM generate_series(1, 100000) i")
    msgs = kafka.consume([outbox.topic("user")], until=100000, timeout=240)
    seqs = [json.loads(m["value"])["seq"] for m in msgs]
    assert len(seqs) == 100000 and len(set(seqs)) == 100000
    per_key = {}
    for m, s in zip(msgs, seqs):
        assert per_key.get(m["key"], 0) < s
        per_key[m["key"]] = s
    assert outbox.relay.stop() == 0


def test_other_tables_interleaved_are_not_published(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=50, per_txn=4, other_table=True)
    outbox.db.execute("INSERT INTO public.other (note) SELECT 'x' FROM generate_series(1, 1000)")
    # An update and a delete of outbox rows (a retention purge) publish nothing.
    outbox.db.execute("DELETE FROM outbox.events WHERE created_at < now() + interval '1 day'")
    msgs = consume_events(kafka, outbox, len(rows))
    assert_exactly_once_in_order(msgs, rows, outbox)
    # Nothing else comes after them.
    end = consume_events(kafka, outbox, None, timeout=20)
    assert len(end) == len(rows)


def test_values_pass_through_byte_exact(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    payload = ('{"big": 9007199254740993, "num": 12345678901234567890.123, '
               '"quote": "say \\"hi\\"", "backslash": "C:\\\\path\\\\x", '
               '"text": "Zoë 😀 日本", "ctrl": "a\\u0001b\\nc", "deep": {"a": [1, 2.50, -0.0]}}')
    headers = '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "n": 9007199254740993, "q": "a\\"b"}'
    outbox.db.execute("SELECT outbox.publish('user', 'ünïcode-key', 'Exact', %s::jsonb, %s::jsonb)",
                      (payload, headers))
    stored = outbox.db.query("SELECT payload::text FROM outbox.events")[0][0]
    msgs = kafka.consume([outbox.topic("user")], until=1, timeout=60)
    assert len(msgs) == 1
    m = msgs[0]
    assert m["value"] == stored.encode()
    assert b"9007199254740993" in m["value"] and b"12345678901234567890.123" in m["value"]
    assert m["key"] == "ünïcode-key".encode()
    h = dict(m["headers"])
    assert h["traceparent"] == b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert h["n"] == b"9007199254740993"
    assert h["q"] == b'a"b'
    assert outbox.relay.stop() == 0  # a clean exit (under valgrind: no errors, no definite leaks)


def test_sigterm_mid_stream_then_restart_loses_nothing(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = {}
    done = threading.Event()

    def writer():
        seq = 0
        while not done.is_set() and seq < 20000:
            rows.update(write_events(outbox.db, transactions=10, per_txn=10, start=seq))
            seq += 100

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: len(rows) >= 2000, 60, what="rows written")
        assert outbox.relay.stop(signal.SIGTERM) == 0
        assert "stopped; confirmed up to" in outbox.relay.log()
        wait_for(lambda: len(rows) >= 4000, 60, what="rows written while stopped")
        outbox.relay.start()
        outbox.relay.wait_streaming()
    finally:
        done.set()
        t.join()
    msgs = consume_events(kafka, outbox, len(rows), timeout=180)
    # A clean stop ends at a transaction boundary after Kafka acknowledged it: no duplicates.
    assert_exactly_once_in_order(msgs, rows, outbox)
    assert outbox.relay.stop() == 0


def test_confirmed_lsn_never_passes_what_kafka_acknowledged(outbox, kafka, pg):
    # A short wal_sender_timeout: the relay must keep answering while Kafka does not.
    pg.execute("ALTER SYSTEM SET wal_sender_timeout = '3s'")
    pg.execute("SELECT pg_reload_conf()")
    try:
        check_slot_held_while_kafka_is_paused(outbox, kafka)
    finally:
        pg.execute("ALTER SYSTEM RESET wal_sender_timeout")
        pg.execute("SELECT pg_reload_conf()")
    assert "replication connection lost" not in outbox.relay.log()


def check_slot_held_while_kafka_is_paused(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    write_events(outbox.db, transactions=5, per_txn=2)
    consume_events(kafka, outbox, 10)
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= slot_lsns(outbox.db, outbox.slot)[1] - 1024,
             30, what="slot caught up")
    before = outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0]
    kafka.pause()
    try:
        rows = write_events(outbox.db, transactions=20, per_txn=5, start=100)
        # The relay reads the rows but Kafka cannot acknowledge them: the slot must not move
        # past the first of them, while status messages keep flowing.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            assert slot_lsns(outbox.db, outbox.slot)[0] <= before
            time.sleep(0.2)  # sampling the slot position while the broker is paused
        assert outbox.relay.proc.poll() is None
    finally:
        kafka.resume()
    msgs = kafka.consume([outbox.topic(a) for a in AGGREGATES], until=110, timeout=120)
    got = {dict(m["headers"])["event_id"].decode() for m in msgs}
    assert set(rows) <= got
    after = outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0]
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= after - 1024, 30, what="slot advanced")


def test_idle_database_slot_follows_wal(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute("CREATE TABLE noise (x int)")
    outbox.db.execute("INSERT INTO noise SELECT generate_series(1, 10000)")
    target = outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0]
    wait_for(lambda: slot_lsns(outbox.db, outbox.slot)[0] >= target, 45, what="idle slot following WAL")


def test_reconnects_after_walsender_is_terminated(outbox, kafka, pg):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=20, per_txn=5)
    consume_events(kafka, outbox, len(rows))
    mark = len(outbox.relay.log())
    pg.kill_walsenders(outbox.db.name)
    outbox.relay.wait_log("replication connection lost", since=mark)
    outbox.relay.wait_log("streaming from slot", since=mark)
    rows.update(write_events(outbox.db, transactions=20, per_txn=5, start=1000))
    msgs = consume_events(kafka, outbox, len(rows))
    assert_exactly_once_in_order(msgs, rows, outbox)


def test_postgres_restart_is_survived(outbox, kafka, pg):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=10, per_txn=5)
    consume_events(kafka, outbox, len(rows))
    mark = len(outbox.relay.log())
    pg.restart(mode="fast")
    outbox.relay.wait_log("streaming from slot", since=mark, timeout=60)
    rows.update(write_events(outbox.db, transactions=10, per_txn=5, start=1000))
    msgs = consume_events(kafka, outbox, len(rows))
    assert_exactly_once_in_order(msgs, rows, outbox)


def test_slot_of_another_plugin_is_refused_with_one_clear_line(outbox):
    outbox.db.query("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (outbox.slot,))
    outbox.relay.start()
    assert outbox.relay.wait_exit(30) == 1
    assert "must be a logical slot of wal2json" in outbox.relay.log()


def test_role_without_replication_is_told_what_to_change(outbox, pg):
    role = "norepl_" + outbox.slot
    outbox.db.execute("CREATE ROLE %s LOGIN" % role)
    try:
        outbox.reconfigure()
        conf = open(outbox.config_path).read().replace("user=postgres", "user=" + role)
        open(outbox.config_path, "w").write(conf)
        outbox.relay.start()
        assert outbox.relay.wait_exit(30) == 1
        assert "REPLICATION" in outbox.relay.log()
    finally:
        outbox.db.execute("DROP ROLE %s" % role)


def test_bad_config_names_file_and_line(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text('postgresql = {\n  conninfo = "x";\n  slots = "y";\n};\nkafka = { bootstrap_servers = "b"; acks = 1; };\n')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2
    assert "%s:3: unknown setting 'postgresql.slots'" % path in out
    path.write_text('postgresql = { conninfo = "x"; status_interval_ms = "fast"; };\nkafka = { bootstrap_servers = "b"; };\n')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s:1: postgresql.status_interval_ms must be an integer" % path in out
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = {\n bootstrap_servers = "b";\n acks = 1;\n};\n')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s:4: kafka acks must be all" % path in out
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = {\n bootstrap_servers = "b";\n no_such_thing = 1;\n};\n')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s:4: kafka no.such.thing" % path in out
    code, out = relayctl.run_once(["check-config", os.path.join(relayctl.REPO_ROOT, "conf", "outbox-relay.conf.example")])
    assert code == 0, out


def test_check_config_lists_every_problem_with_file_and_line(tmp_path):
    """check-config reports each problem of a file at its FILE:LINE, not just the first; a run
    refuses the same file with the same lines (a capture topic with ${foo} used to pass
    check-config and then make the relay refuse every table)."""
    path = tmp_path / "many.conf"
    path.write_text(
        'postgresql = {\n'                                   # 1
        '  conninfo = "x";\n'                                # 2
        '  status_interval_ms = 5;\n'                        # 3
        '};\n'                                               # 4
        'kafka = { bootstrap_servers = "b"; };\n'            # 5
        'relay = {\n'                                        # 6
        '  log_level = "loud";\n'                            # 7
        '  slot_los = "stop";\n'                             # 8
        '};\n'                                               # 9
        'capture = (\n'                                      # 10
        '  { tables = "public.users";\n'                     # 11
        '    topic = "cdc.${foo}.${table}"; },\n'            # 12
        '  { tables = "public.orders"; topic = "cdc.${"; }\n'  # 13
        ');\n')                                              # 14
    want = [
        "%s:3: postgresql.status_interval_ms = 5 is out of range" % path,
        "%s:7: relay.log_level 'loud' is not one of error, warn, info, debug" % path,
        "%s:8: unknown setting 'relay.slot_los'" % path,
        "%s:12: capture[0].topic: topic template 'cdc.${foo}.${table}': unknown placeholder '${foo}'" % path,
        "%s:13: capture[1].topic: topic template 'cdc.${': '${' without a closing '}'" % path,
    ]
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2, out
    for line in want:
        assert line in out, "want %r in:\n%s" % (line, out)
    lines = out.splitlines()
    assert len(lines) == len(want), out
    assert all(l.startswith("%s:" % path) for l in lines), out
    # Start-up validates the same way, through the same table.
    code, run_out = relayctl.run_once(["--config", str(path)])
    assert code == 2, run_out
    for line in want:
        assert line in run_out, "want %r in:\n%s" % (line, run_out)


def test_help_and_version():
    code, out = relayctl.run_once(["--help"])
    assert code == 0 and "--config FILE" in out
    code, out = relayctl.run_once(["--version"])
    assert code == 0 and out.startswith("outbox-relay ")


def test_kafka_broker_restart_loses_nothing(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=20, per_txn=5)
    consume_events(kafka, outbox, len(rows))
    kafka.stop()
    try:
        # Written while the broker is down: the relay must hold them and the slot.
        rows.update(write_events(outbox.db, transactions=20, per_txn=5, start=1000))
    finally:
        kafka.start()
    rows.update(write_events(outbox.db, transactions=20, per_txn=5, start=2000))
    msgs = consume_events(kafka, outbox, len(rows), timeout=180)
    got = [dict(m["headers"])["event_id"].decode() for m in msgs]
    assert set(rows) <= set(got), "%d events lost" % len(set(rows) - set(got))
    assert outbox.relay.proc.poll() is None
    assert outbox.relay.stop() == 0


def test_make_install_honours_prefix_and_destdir(tmp_path):
    dest = tmp_path / "root"
    subprocess.run(["make", "-s", "-C", relayctl.REPO_ROOT, "install", "DESTDIR=%s" % dest, "PREFIX=/usr"],
                   check=True, stdout=subprocess.DEVNULL)
    for path in ["usr/bin/outbox-relay", "usr/share/outbox-relay/sql/outbox.sql",
                 "usr/share/outbox-relay/sql/relay-role.sql",
                 "usr/share/outbox-relay/outbox-relay.conf.example",
                 "usr/share/doc/outbox-relay/README.md", "usr/share/doc/outbox-relay/guarantees.md"]:
        assert (dest / path).is_file(), path
    assert os.access(dest / "usr/bin/outbox-relay", os.X_OK)


def test_configuration_doc_lists_every_key():
    code, out = relayctl.run_once(["--describe-config"])
    assert code == 0
    doc = open(os.path.join(relayctl.REPO_ROOT, "docs", "configuration.md")).read()
    example = open(os.path.join(relayctl.REPO_ROOT, "conf", "outbox-relay.conf.example")).read()
    for line in out.splitlines()[2:]:
        key = line.split("`")[1]
        assert line in doc, "docs/configuration.md is out of date for %s (paste --describe-config)" % key
        if not key.endswith("*"):
            assert key.split(".")[1] + " =" in example, "the example config lacks %s" % key


def test_sighup_reloads_what_it_can_and_keeps_the_rest(outbox, kafka):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    good = open(outbox.config_path).read()
    # A reloadable key changes; a key that needs a restart is refused with a warning.
    changed = good.replace('log_level = "debug";', 'log_level = "info"; transaction_max_ms = 50;')
    changed = changed.replace('slot = "%s";' % outbox.slot, 'slot = "%s_other";' % outbox.slot)
    open(outbox.config_path, "w").write(changed)
    mark = len(outbox.relay.log())
    outbox.relay.proc.send_signal(signal.SIGHUP)
    outbox.relay.wait_log("reloaded", since=mark)
    log = outbox.relay.log()[mark:]
    assert "relay.log_level changed" in log and "relay.transaction_max_ms changed" in log
    assert "postgresql.slot changed, which needs a restart" in log
    # A broken file keeps the running configuration, and the relay goes on publishing.
    open(outbox.config_path, "w").write(good + "\nbroken = ;\n")
    mark = len(outbox.relay.log())
    outbox.relay.proc.send_signal(signal.SIGHUP)
    outbox.relay.wait_log("keeping the running configuration", since=mark)
    rows = write_events(outbox.db, transactions=3, per_txn=2)
    msgs = consume_events(kafka, outbox, len(rows))
    assert_exactly_once_in_order(msgs, rows, outbox)
    assert outbox.relay.stop() == 0


def test_secrets_from_credentials_never_appear_in_output(outbox, kafka, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pgpassword").write_text("S3cr3t-pg-pw\n")
    (creds / "kafka-sasl-password").write_text("S3cr3t-kafka-pw")
    outbox.relay.env = {"CREDENTIALS_DIRECTORY": str(creds)}
    outbox.relay.start()
    outbox.relay.wait_streaming()
    rows = write_events(outbox.db, transactions=3, per_txn=2)
    consume_events(kafka, outbox, len(rows))
    outbox.relay.proc.send_signal(signal.SIGHUP)
    outbox.relay.wait_log("reloaded")
    assert outbox.relay.stop() == 0
    log = outbox.relay.log()
    assert "S3cr3t" not in log
    assert "sasl.password" not in log or "S3cr3t" not in log


def test_preflight_and_status(outbox, kafka):
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert code == 0, out
    assert "ok   wal_level = logical" in out and "ok   wal2json loads" in out
    assert "preflight: all checks passed" in out
    outbox.relay.start()
    outbox.relay.wait_streaming()
    write_events(outbox.db, transactions=2, per_txn=2)
    consume_events(kafka, outbox, 4)
    code, out = relayctl.run_once(["status", outbox.config_path, "--json"], timeout=60)
    assert code == 0, out
    st = json.loads(out)
    assert st["slot_exists"] and st["relay_connected"] and st["plugin"] == "wal2json"
    assert st["checkpoint_lsn"] and st["retained_wal_bytes"] >= 0
    code, out = relayctl.run_once(["status", outbox.config_path], timeout=60)
    assert code == 0 and "confirmed_lsn" in out
    assert outbox.relay.stop() == 0


def test_preflight_names_each_problem_with_its_fix(outbox, pg):
    # A slot of another plugin, and a table that does not exist.
    outbox.db.query("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (outbox.slot,))
    outbox.reconfigure(sources='{ table = "public.missing"; }')
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert code == 1
    assert "FAIL table public.missing exists: create it" in out
    assert 'FAIL slot "%s": is a slot of plugin test_decoding' % outbox.slot in out
    assert "preflight: FAILED" in out


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_log_formats(outbox, fmt):
    outbox.reconfigure(extra_relay='log_format = "%s";' % fmt)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    assert outbox.relay.stop() == 0
    lines = [l for l in outbox.relay.log().splitlines() if l and not l.startswith("====")]
    assert lines
    for line in lines:
        if fmt == "json":
            obj = json.loads(line)
            assert set(obj) >= {"ts", "level", "msg"}
        else:
            assert line.startswith("ts=") and " level=" in line and ' msg="' in line


def test_warns_when_the_slot_falls_behind(outbox, kafka):
    outbox.reconfigure(extra_relay="lag_warn_mb = 1;")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    kafka.pause()
    try:
        # A few MB of WAL (random text: it does not compress) the relay cannot confirm while
        # Kafka does not answer.
        outbox.db.execute("INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
                          "SELECT 'user', 'k', 'Big', jsonb_build_object('pad', "
                          "(SELECT string_agg(md5(random()::text || i || j), '') FROM generate_series(1, 60) j)) "
                          "FROM generate_series(1, 2000) i")
        outbox.relay.wait_log("MB of WAL for slot", timeout=30)
    finally:
        kafka.resume()
    assert len(kafka.consume([outbox.topic("user")], until=2000, timeout=120)) == 2000
