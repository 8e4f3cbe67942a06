# Bad inputs: a misconfigured server or broker, and awkward data; each is published, dead-lettered or refused clearly.
import json
import signal

from harness import free_port, wait_for
from events import slot_lsns


def test_wal2json_not_allowed_by_output_plugin_libraries(outbox, pg):
    if not pg.query("SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries'"):
        return  # a server before 15.19 loads any plugin
    pg.execute("ALTER SYSTEM SET output_plugin_libraries = pgoutput")
    pg.execute("SELECT pg_reload_conf()")
    try:
        outbox.relay.start()
        assert outbox.relay.wait_exit(60) == 1
        assert "output_plugin_libraries" in outbox.relay.log()
    finally:
        pg.execute("ALTER SYSTEM RESET output_plugin_libraries")
        pg.execute("SELECT pg_reload_conf()")


def test_slot_dropped_while_running_stops_the_relay(outbox, kafka, pg):
    outbox.relay.start()
    outbox.relay.wait_streaming()
    pid = outbox.db.query("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (outbox.slot,))[0][0]
    outbox.db.query("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    # The relay reconnects; drop the slot in between, retrying while it is active again.
    def dropped():
        try:
            outbox.db.query("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots "
                            "WHERE slot_name = %s AND active_pid IS NOT NULL", (outbox.slot,))
            outbox.db.query("SELECT pg_drop_replication_slot(%s)", (outbox.slot,))
            return True
        except Exception:
            return False
    wait_for(dropped, 30, what="slot dropped")
    # Recreated by the relay, but its checkpoint is ahead: a loud refusal, not a silent restart.
    assert outbox.relay.wait_exit(60) == 1
    assert "was just created, but this relay's checkpoint" in outbox.relay.log()


def test_broker_unreachable_at_start_is_retried_and_logged(outbox):
    outbox.reconfigure(extra_kafka='socket_timeout_ms = 2000;')
    conf = open(outbox.config_path).read()
    import re
    conf = re.sub(r'bootstrap_servers = "[^"]*"', 'bootstrap_servers = "127.0.0.1:%d"' % free_port(), conf)
    open(outbox.config_path, "w").write(conf)
    outbox.relay.start()
    outbox.relay.wait_log("Connection refused", timeout=60)
    assert outbox.relay.proc.poll() is None
    assert outbox.relay.stop(signal.SIGTERM) == 0


def test_awkward_data_is_published(outbox, kafka):
    cols = ", ".join("c%d text DEFAULT ''" % i for i in range(1, 1590))
    outbox.db.execute("CREATE TABLE public.wide (id uuid DEFAULT gen_random_uuid(), k text, v text, "
                      "bin bytea, %s)" % cols)
    outbox.reconfigure(sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                               '{ table = "public.wide"; topic = "%s.wide"; key = "k"; value = "v"; '
                               'event_type = "k"; headers = [ "bin" ]; headers_column = ""; }'
                               % (outbox.prefix, outbox.prefix))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    deep = "[" * 5000 + "]" * 5000
    outbox.db.execute("SELECT outbox.publish('edge', '', '', %s::jsonb, '{\"\": \"\"}')", (deep,))
    outbox.db.execute("INSERT INTO public.wide (k, v, bin) VALUES ('row', '', '\\x00ff00'::bytea)")
    edge = kafka.consume([outbox.prefix + ".edge"], until=1, timeout=60)
    assert len(edge) == 1 and edge[0]["key"] == b"" and edge[0]["value"] == deep.replace("][", "], [").encode() or \
        json.loads(edge[0]["value"]) == json.loads(deep)
    wide = kafka.consume([outbox.prefix + ".wide"], until=1, timeout=60)
    assert len(wide) == 1 and wide[0]["value"] == b"" and dict(wide[0]["headers"])["bin"] == b"00ff00"


def test_wal_level_replica_is_named_by_the_relay_and_preflight(kafka, tmp_path):
    """A server with wal_level = replica: one line saying what to change, from both commands."""
    import harness
    import relayctl
    server = harness.Postgres(extra_settings={"wal_level": "replica"})
    try:
        server.start()
        db = server.create_database("t_wal_level_replica")
        relayctl.install_outbox(db)
        conf = str(tmp_path / "relay.conf")
        relayctl.write_config(conf, db.dsn, kafka.bootstrap, "relay_replica", "t_replica.${aggregate_type}")
        code, out = relayctl.run_once(["preflight", conf], timeout=60)
        assert code != 0, out
        lines = [l for l in out.splitlines() if l.startswith("FAIL")]
        assert len(lines) == 1 and "wal_level = replica" in lines[0], out
        assert "set wal_level = logical in postgresql.conf and restart PostgreSQL" in lines[0]
        relay = relayctl.Relay(conf, str(tmp_path))
        relay.start()
        try:
            assert relay.wait_exit(60) == 1
        finally:
            relay.kill()
        lines = [l for l in relay.log().splitlines() if " error " in l]
        assert len(lines) == 1, relay.log()[-3000:]
        assert "wal_level is 'replica'" in lines[0] and "set wal_level = logical" in lines[0]
        assert not server.query("SELECT 1 FROM pg_replication_slots")  # nothing created
    finally:
        server.cleanup()
