# relayctl.py: runs the outbox-relay binary for tests: a config per test, logs, stop and wait helpers.
import json
import os
import signal
import subprocess
import tempfile
import time

from harness import REPO_ROOT, wait_for

RELAY_BIN = os.environ.get("RELAY_BIN", os.path.join(REPO_ROOT, "relay", "outbox-relay"))
SQL_DIR = os.path.join(REPO_ROOT, "sql")


def install_outbox(db):
    """Runs sql/outbox.sql in a test database (psql, as a user would)."""
    subprocess.run(["psql", "-X", "-q", "-d", db.dsn, "-f", os.path.join(SQL_DIR, "outbox.sql")],
                   check=True, stdout=subprocess.DEVNULL)


def checkpoint_topic(slot):
    """The checkpoint topic of a test relay on slot: one per slot, so that a relay another test
    killed inside a Kafka transaction (open until the broker aborts it, about 60 s) does not hold
    back this relay's start, its status or a test's read_committed read of its checkpoints.
    tests/test_checkpoint_shared.py covers relays sharing the default topic."""
    return slot + ".checkpoints"


def write_config(path, conninfo, bootstrap, slot, topic, extra_pg="", extra_relay="", extra_kafka="",
                 sources=None, capture=None, extra_top="", shared_checkpoints=False):
    """Writes a relay config file for one test.

    sources: the text of libconfig groups for the sources list; by default one source reading
    outbox.events with the given topic template. capture: the groups of a capture list.
    extra_top: more top-level groups (e.g. schema_registry = { ... };). The checkpoint topic is
    checkpoint_topic(slot) unless extra_relay names one or shared_checkpoints asks for the
    relay's default (outbox-relay.checkpoints, shared by every relay of the broker).
    """
    if "checkpoint_topic" not in extra_relay and not shared_checkpoints:
        extra_relay = 'checkpoint_topic = "%s"; %s' % (checkpoint_topic(slot), extra_relay)
    if sources is None:
        sources = '{ table = "outbox.events"; topic = "%s"; }' % topic
    if capture:
        sources = sources + " );\ncapture = ( " + capture
    with open(path, "w") as f:
        f.write("""
postgresql = {
  conninfo = "%s";
  slot = "%s";
  status_interval_ms = 1000;
  %s
};
sources = ( %s );
relay = { log_level = "debug"; shutdown_timeout_ms = 20000; reconnect_max_backoff_ms = 2000; %s };
kafka = {
  bootstrap_servers = "%s";
  %s
};
%s
""" % (conninfo, slot, extra_pg, sources, extra_relay, bootstrap, extra_kafka, extra_top))


class Relay:
    """One relay process with its own config file and log file."""

    def __init__(self, config_path, workdir, binary=RELAY_BIN, env=None):
        self.env = env
        self.config_path = config_path
        self.binary = binary
        self.log_path = os.path.join(workdir, "relay.log")
        self.proc = None
        self.runs = 0

    def start(self):
        """Starts the relay; its stderr goes to the log file (appended across restarts)."""
        assert self.proc is None or self.proc.poll() is not None
        log = open(self.log_path, "a")
        log.write("==== start %d\n" % self.runs)
        log.flush()
        self.runs += 1
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen([self.binary, "--config", self.config_path],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=30, since=0):
        """Waits until the log (from offset since) contains text; returns the log."""
        wait_for(lambda: text in self.log()[since:] or self.proc.poll() is not None,
                 timeout, what="relay log line %r" % text)
        assert text in self.log()[since:], "relay exited before logging %r:\n%s" % (text, self.log()[-3000:])
        return self.log()

    def wait_streaming(self, timeout=100):
        """Waits for the log line that says streaming started in the current run: up to 100 s,
        as a start can wait behind a killed relay's open transaction on its checkpoint topic (its
        own, killed by the test, or another's on a shared one) until the broker aborts it
        (transaction.timeout.ms, 60 s)."""
        marker = "==== start %d\n" % (self.runs - 1)
        wait_for(lambda: "streaming from slot" in self.log().split(marker)[-1] or self.proc.poll() is not None,
                 timeout, what="relay streaming")
        assert self.proc.poll() is None, "relay exited:\n" + self.log()[-3000:]

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and waits for the exit; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=60):
        """Waits for the process to end by itself; returns its exit code."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("relay did not exit in %s s:\n%s" % (timeout, self.log()[-3000:]))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def end_of_test(relay, request):
    """A fixture's teardown: kills the relay and, when the test failed, prints its log's tail
    (nothing for a relay the test never started: it has no log)."""
    if relay.proc is None:
        return
    relay.kill()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("---- relay log (tail)\n" + relay.log()[-6000:])


def run_to_exit(config_path, workdir, timeout=60):
    """Starts a relay that must stop by itself (a refusal); returns (exit code, its error lines)."""
    relay = Relay(config_path, workdir)
    relay.start()
    try:
        code = relay.wait_exit(timeout)
    finally:
        relay.kill()
    return code, [line for line in relay.log().splitlines() if " error " in line]


def run_once(args, timeout=30):
    """Runs the relay binary with arguments; returns (exit code, output)."""
    p = subprocess.run([RELAY_BIN] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace")


def check_config_text(directory, body):
    """`check-config` of directory/relay.conf: the minimal postgresql and kafka groups (lines 1
    and 2), then body (from line 3). Returns (exit code, output)."""
    path = directory / "relay.conf"
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n' + body)
    return run_once(["check-config", str(path)])


def newest_status(config_path, timeout=180):
    """`outbox-relay status --json` once it read the checkpoint topic to its end: status waits
    at most 2 s behind an open Kafka transaction (the running relay's own, or another's) and then
    answers the checkpoint before it with checkpoint_incomplete; a test that needs the newest
    checkpoint asks again until the answer is whole."""
    def whole():
        code, out = run_once(["status", config_path, "--json"], timeout=120)
        if code != 0:
            return None
        st = json.loads(out)
        return st if "checkpoint_incomplete" not in st and "checkpoint_error" not in st else None
    return wait_for(whole, timeout, interval=0.5, what="a whole checkpoint read by outbox-relay status")


def drop_active_slot(db, slot, timeout=30):
    """Drops a slot a relay is streaming from. The relay reconnects within milliseconds, sooner than
    pg_terminate_backend's wait returns, so its database refuses new connections meanwhile: the
    walsender is terminated, the slot dropped, and connections are allowed again."""
    server = db.pg  # connections to the slot's own database are refused meanwhile
    rows = server.query("SELECT database FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    if not rows:
        return
    dbname = rows[0][0]
    ident = '"%s"' % dbname.replace('"', '""')
    server.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false" % ident)
    try:
        def dropped():
            server.execute("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots "
                           "WHERE slot_name = %s AND active_pid IS NOT NULL", (slot,))
            try:
                server.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            except Exception:
                pass
            return not server.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        wait_for(dropped, timeout, interval=0.05, what="slot %s dropped" % slot)
    finally:
        server.execute("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true" % ident)
