# systemd_run.py (make systemd-test): the Debian package's unit under a real systemd (a booted nspawn container), one PASS/FAIL line per check.
"""Boots Debian 12 with systemd as PID 1 (systemd-nspawn --boot, the host's network), installs
build/deb/outbox-relay_*.deb in it and runs outbox-relay@app against a PostgreSQL (TLS, password
authentication) and a Kafka (SSL listener, advertised as localhost) started on the host by the
harness. The root file system comes from debootstrap once, then from a tarball in
.cache/nspawn/ (a second run skips debootstrap). Exit status: the number of failed checks."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "python"))
import harness  # noqa: E402
from harness import wait_for  # noqa: E402
import relayctl  # noqa: E402
from events import AGGREGATES, write_events  # noqa: E402
from test_tls import P12_PASSWORD, _make_ca, _make_leaf, _openssl  # noqa: E402

REPO = relayctl.REPO_ROOT
CACHE = os.path.join(REPO, ".cache", "nspawn")
ROOTFS_TAR = os.path.join(CACHE, "bookworm-outbox-relay-rootfs-3.tar")
ROOT = os.path.join(REPO, "build", "nspawn", "root")
MIRROR = "http://deb.debian.org/debian"
# The package's dependencies come with the root file system, so that dpkg -i needs no network
# (and fails when debian/control names one that is not here).
INCLUDE = ("systemd,systemd-sysv,dbus,ca-certificates,procps,libpq5,librdkafka1,libjansson4,libconfig9,"
           "libmicrohttpd12,libavro23,libcurl4,libssl3,libnettle8,libsystemd0")
UNIT = "outbox-relay@app.service"
PG_PASSWORD = "s3cret-" + uuid.uuid4().hex[:8]

results = []


def report(name, ok, detail=""):
    """One line per check, kept for the summary."""
    results.append(ok)
    print("%s %s%s" % ("PASS" if ok else "FAIL", name, (": " + detail) if detail else ""), flush=True)


def rootfs():
    """A fresh build/nspawn/root from the cached tarball (made by debootstrap on first use)."""
    if os.path.exists(ROOT):
        shutil.rmtree(ROOT)
    os.makedirs(ROOT)
    if not os.path.exists(ROOTFS_TAR):
        os.makedirs(CACHE, exist_ok=True)
        print("systemd_run: debootstrap bookworm (once; cached in %s)" % ROOTFS_TAR, flush=True)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=" + INCLUDE, "bookworm", ROOT, MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        tmp = ROOTFS_TAR + ".part-%d" % os.getpid()
        subprocess.run(["tar", "-C", ROOT, "-cf", tmp, "."], check=True)
        os.rename(tmp, ROOTFS_TAR)
    else:
        subprocess.run(["tar", "-C", ROOT, "-xf", ROOTFS_TAR], check=True)


def nspawn_run(*cmd):
    """A command in the root file system before the boot (no systemd running there)."""
    return subprocess.run(["systemd-nspawn", "-D", ROOT, "--quiet", "--register=no", "--keep-unit", "--pipe"]
                          + list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Container:
    """The booted container: systemd is PID 1 in it; commands run there through nsenter."""

    def __init__(self, log_path):
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(["systemd-nspawn", "-D", ROOT, "--register=no", "--keep-unit", "--boot",
                                      "--machine=relaytest"], stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self.leader = wait_for(self._leader, 30, what="the container's PID 1")

    def _leader(self):
        kids = subprocess.run(["pgrep", "-P", str(self.proc.pid)], stdout=subprocess.PIPE, text=True).stdout.split()
        return int(kids[0]) if kids else None

    def run(self, *cmd, timeout=120):
        proc = subprocess.run(["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "--"] + list(cmd),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        return proc.returncode, proc.stdout.strip()

    def show(self, *props):
        """systemctl show of the unit: {property: value}."""
        _, out = self.run("systemctl", "show", UNIT, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self):
        """The unit's journal entries (dicts of journalctl -o json)."""
        _, out = self.run("journalctl", "-u", UNIT, "-o", "json", "--no-pager")
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def messages(self):
        return [e.get("MESSAGE", "") for e in self.journal() if e.get("_PID") and e.get("SYSLOG_IDENTIFIER") ==
                "outbox-relay"]

    def poweroff(self):
        self.proc.send_signal(signal.SIGTERM)  # nspawn shuts the container down in order
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def make_certs(d):
    """A CA and server certificates for localhost (PostgreSQL, and Kafka in a PKCS12 keystore)."""
    san = "subjectAltName = DNS:localhost, IP:127.0.0.1"
    _make_ca(d, "ca")
    _make_leaf(d, "pg-server", "localhost", san + "\nextendedKeyUsage = serverAuth")
    _make_leaf(d, "kafka-server", "localhost", san + "\nextendedKeyUsage = serverAuth")
    _openssl("pkcs12", "-export", "-in", "kafka-server.crt", "-inkey", "kafka-server.key", "-certfile", "ca.crt",
             "-name", "kafka", "-out", "kafka-server.p12", "-passout", "pass:" + P12_PASSWORD, cwd=d)


def relay_config(pg, db, kafka, slot, prefix, metrics_port, ca, log_level):
    """The instance's configuration: names (localhost) for both servers, TLS with the CA, no password."""
    return """# outbox-relay@app for tests/systemd_run.py
postgresql = {
  conninfo = "host=localhost port=%d dbname=%s user=postgres sslmode=verify-full sslrootcert=%s connect_timeout=10";
  slot = "%s";
  status_interval_ms = 1000;
};
sources = ( { table = "outbox.events"; topic = "%s.${aggregate_type}"; } );
relay = { log_level = "%s"; metrics_listen = "127.0.0.1:%d"; shutdown_timeout_ms = 20000; };
kafka = {
  bootstrap_servers = "localhost:%d";
  security_protocol = "SSL";
  ssl_ca_location = "%s";
  ssl_endpoint_identification_algorithm = "https";
};
""" % (pg.port, db.name, ca, slot, prefix, log_level, metrics_port, kafka.ssl_port, ca)


def events_arrive(kafka, topics, db, n_txn, already):
    """Writes n_txn transactions of 2 events; true once all (and those before) are in Kafka."""
    write_events(db, transactions=n_txn, per_txn=2, start=already)
    want = already + 2 * n_txn
    got = kafka.consume(topics, until=want, timeout=90)
    return len(got) == want, want, len(got)


def pending_inserts(pg, db, slot):
    """Outbox inserts the (inactive) slot would still send: 0 once everything was confirmed."""
    rows = pg.query("SELECT count(*) FROM pg_logical_slot_peek_changes(%s, NULL, NULL, 'format-version', '2') "
                    "WHERE data LIKE '%%\"action\":\"I\"%%'", (slot,), dbname=db.name)
    return rows[0][0]


def stays(predicate, seconds, interval=1.0):
    """True when predicate holds at every poll for `seconds` (a bounded observation window)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not predicate():
            return False
        time.sleep(interval)
    return True


def run_checks(c, pg, db, kafka, slot, prefix, conf_path, host_conf):
    topics = ["%s.%s" % (prefix, a) for a in AGGREGATES]
    code, out = c.run("systemctl", "start", UNIT)
    s = c.show("ActiveState", "SubState", "StatusText", "WatchdogUSec", "MainPID", "NRestarts")
    report("start: systemctl start returns 0 after READY=1 (Type=notify: active/running)",
           code == 0 and s.get("ActiveState") == "active" and s.get("SubState") == "running", out or str(s))
    started = time.monotonic()
    first_pid = s.get("MainPID")
    status = wait_for(lambda: c.show("StatusText")["StatusText"].startswith("streaming")
                      and c.show("StatusText")["StatusText"], 30, what="a streaming STATUS")
    report("STATUS line in systemctl show -p StatusText", bool(status), status)
    report("watchdog armed: WatchdogUSec=30s", s.get("WatchdogUSec") == "30s", s.get("WatchdogUSec"))

    _, creds = c.run("ls", "/run/credentials/" + UNIT)
    ssl = pg.query("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                   "WHERE a.backend_type = 'walsender' AND a.datname = %s", (db.name,))
    report("password from LoadCredential (scram-only server; no password in app.conf)",
           creds.split() == ["pgpassword"] and bool(ssl), "credentials: %s" % creds)
    ok, want, got = events_arrive(kafka, topics, db, 5, 0)
    report("sandbox allows TLS files: PostgreSQL over verify-full, Kafka over SSL with the CA in /etc/outbox-relay",
           ok and ssl == [(True,)], "walsender ssl=%s, %d/%d events in Kafka" % (ssl, got, want))
    report("sandbox allows name resolution: both servers named localhost (resolved in the unit)", ok)
    published = 0
    metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % c.metrics_port, timeout=5).read().decode()
    for line in metrics.splitlines():
        if line.startswith("outbox_relay_records_published_total{") and prefix in line:
            published += int(float(line.split()[-1]))
    report("sandbox allows the metrics port: /metrics answers from the unit", published == want,
           "records_published_total for the test topics = %d" % published)
    if published != want:
        print("\n".join(l for l in metrics.splitlines() if "published" in l))

    # Reload: relay.log_level (reloadable) info -> debug.
    with open(conf_path) as f:
        text = f.read()
    with open(conf_path, "w") as f:
        f.write(text.replace('log_level = "info"', 'log_level = "debug"'))
    code, out = c.run("systemctl", "reload", UNIT)
    changed = wait_for(lambda: any("reload: relay.log_level changed" in m for m in c.messages()), 30,
                       what="the reload's log line")
    debug = wait_for(lambda: [e for e in c.journal() if e.get("PRIORITY") == "7"], 30, what="debug lines")
    report("systemctl reload changes a reloadable key (relay.log_level: debug lines follow)",
           code == 0 and changed and bool(debug) and c.show("ActiveState")["ActiveState"] == "active",
           "%s; %d debug entries" % (next(m for m in c.messages() if "log_level changed" in m), len(debug)))

    entries = [e for e in c.journal() if e.get("SYSLOG_IDENTIFIER") == "outbox-relay"]
    bad = [e.get("MESSAGE") for e in entries
           if "\n" in str(e.get("MESSAGE")) or str(e.get("MESSAGE", "")).startswith("<")]
    prios = sorted({e.get("PRIORITY") for e in entries})
    report("journal: one entry per log line, priority from the <N> prefix (no prefix, no line breaks in MESSAGE)",
           not bad and "6" in prios and "7" in prios, "%d entries, priorities %s%s" % (
               len(entries), ",".join(prios), "; bad: %r" % bad[:3] if bad else ""))

    # Watchdog: a minute after READY without a watchdog kill or a restart.
    same = stays(lambda: c.show("MainPID", "NRestarts") == {"MainPID": first_pid, "NRestarts": "0"},
                 max(0.0, 62 - (time.monotonic() - started)), interval=2)
    wd = [m for m in c.run("journalctl", "-u", UNIT, "--no-pager")[1].splitlines() if "atchdog" in m]
    report("watchdog: 60 s after READY, same main PID, NRestarts=0, no watchdog timeout in the journal",
           same and not wd, "%.0f s; %s" % (time.monotonic() - started, wd[:1] or "no watchdog lines"))

    ok2, want, got = events_arrive(kafka, topics, db, 3, want)
    code, out = c.run("systemctl", "stop", UNIT)
    s = c.show("ExecMainStatus", "ExecMainCode", "Result", "ActiveState")
    pending = pending_inserts(pg, db, slot)
    report("systemctl stop: exit 0, result success, and the slot confirmed past every published event",
           ok2 and code == 0 and s["ExecMainStatus"] == "0" and s["Result"] == "success" and pending == 0,
           "ExecMainStatus=%s Result=%s, inserts still in the slot: %d" % (s["ExecMainStatus"], s["Result"], pending))

    c.run("systemctl", "start", UNIT)
    pid = c.show("MainPID")["MainPID"]
    c.run("kill", "-9", pid)
    restarted = wait_for(lambda: (lambda s: s["NRestarts"] == "1" and s["ActiveState"] == "active"
                                  and s["SubState"] == "running" and s["MainPID"] not in ("0", pid))(
        c.show("NRestarts", "ActiveState", "SubState", "MainPID")), 60, what="the restart after kill -9")
    ok3, want, got = events_arrive(kafka, topics, db, 3, want)
    report("kill -9 of the main PID: restarted (NRestarts=1), READY again, events flow",
           bool(restarted) and ok3, "NRestarts=%s, %d/%d events" % (c.show("NRestarts")["NRestarts"], got, want))

    # Exit 3: a newer relay with the same slot (transactional.id) on the host fences the unit's.
    creds_dir = tempfile.mkdtemp(prefix="relay-creds-")
    with open(os.path.join(creds_dir, "pgpassword"), "w") as f:
        f.write(PG_PASSWORD + "\n")
    newer = relayctl.Relay(host_conf, creds_dir, env={"CREDENTIALS_DIRECTORY": creds_dir})
    newer.start()
    try:
        fenced = wait_for(lambda: c.show("ExecMainStatus")["ExecMainStatus"] == "3", 90, what="exit 3")
        before = c.show("NRestarts")["NRestarts"]
        kept_down = stays(lambda: c.show("ActiveState", "NRestarts") in (
            {"ActiveState": "failed", "NRestarts": before}, {"ActiveState": "inactive", "NRestarts": before}), 12)
        s = c.show("ActiveState", "Result", "ExecMainStatus", "NRestarts")
        report("exit 3 (fenced by a newer relay) is not restarted (RestartPreventExitStatus)",
               bool(fenced) and kept_down, "after 12 s: %s" % " ".join("%s=%s" % kv for kv in sorted(s.items())))
    finally:
        newer.stop()
        shutil.rmtree(creds_dir, ignore_errors=True)


def maintainer_scripts(c, deb):
    """The package's scripts under this systemd: an upgrade restarts a running instance, a
    removal stops it cleanly, a purge keeps the administrator's files."""
    c.run("systemctl", "start", UNIT)
    pid = c.show("MainPID")["MainPID"]
    code, out = c.run("dpkg", "-i", deb)  # the same version again: postinst configure with the old version
    s = c.show("MainPID", "ActiveState", "SubState")
    report("upgrade (dpkg -i over the installed package): the running instance is restarted",
           code == 0 and s["MainPID"] not in ("0", pid) and s["ActiveState"] == "active" and s["SubState"] == "running",
           "MainPID %s -> %s, %s/%s" % (pid, s["MainPID"], s["ActiveState"], s["SubState"]))
    code, out = c.run("dpkg", "-r", "outbox-relay")
    s = c.show("ActiveState", "ExecMainStatus", "LoadState")
    report("remove (dpkg -r): the instance is stopped cleanly (exit 0) and the unit is gone",
           code == 0 and s["ActiveState"] in ("inactive", "failed") and s["ExecMainStatus"] == "0"
           and s["LoadState"] == "not-found", " ".join("%s=%s" % kv for kv in sorted(s.items())))
    code, out = c.run("dpkg", "-P", "outbox-relay")
    _, left = c.run("ls", "/etc/outbox-relay")
    report("purge (dpkg -P): the package is gone, /etc/outbox-relay with the instance's files is kept",
           code == 0 and "app.conf" in left.split() and "outbox-relay: /etc/outbox-relay is not empty" in out,
           out.splitlines()[-1] if out else "")


def ensure_tools():
    """debootstrap and systemd-nspawn (Debian: debootstrap, systemd-container), installed when missing."""
    missing = [pkg for tool, pkg in (("debootstrap", "debootstrap"), ("systemd-nspawn", "systemd-container"),
                                     ("nsenter", "util-linux"), ("openssl", "openssl"))
               if shutil.which(tool) is None]
    if missing:
        print("systemd_run: installing " + " ".join(missing), flush=True)
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)


def main():
    if os.getuid() != 0:
        print("systemd_run: run as root (debootstrap, systemd-nspawn)", file=sys.stderr)
        return 1
    ensure_tools()
    debs = sorted(glob.glob(os.path.join(REPO, "build", "deb", "outbox-relay_*.deb")))
    if not debs:
        print("systemd_run: no build/deb/outbox-relay_*.deb: run make deb first", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="relay-systemd-")
    os.chmod(work, 0o755)
    pg = kafka = c = None
    try:
        make_certs(work)
        rootfs()
        shutil.copy(debs[-1], os.path.join(ROOT, "var", "tmp"))  # nspawn mounts a tmpfs on /tmp
        inst = nspawn_run("dpkg", "-i", "/var/tmp/" + os.path.basename(debs[-1]))
        report("the package installs in the container (dpkg -i)", inst.returncode == 0, inst.stdout.strip()[-200:]
               if inst.returncode else os.path.basename(debs[-1]))
        if inst.returncode:
            return 1

        hba = "local all all trust\nhostssl all postgres 127.0.0.1/32 scram-sha-256\n"
        pg = harness.Postgres(extra_settings={
            "ssl": "on",
            "ssl_cert_file": "'%s'" % os.path.join(work, "pg-server.crt"),
            "ssl_key_file": "'%s'" % os.path.join(work, "pg-server.key"),
            "ssl_ca_file": "'%s'" % os.path.join(work, "ca.crt")}, hba=hba, admin_via_socket=True)
        if pg._user is not None:  # the server refuses a key it does not own with mode 0600
            os.chown(os.path.join(work, "pg-server.key"), pg._user.pw_uid, pg._user.pw_gid)
        pg.start()
        pg.execute("ALTER ROLE postgres PASSWORD %s", (PG_PASSWORD,))
        kafka = harness.Kafka(ssl_properties={
            "ssl.keystore.type": "PKCS12", "ssl.keystore.location": os.path.join(work, "kafka-server.p12"),
            "ssl.keystore.password": P12_PASSWORD, "ssl.key.password": P12_PASSWORD, "ssl.client.auth": "none"})
        kafka.start()
        db = pg.create_database("systemd_" + uuid.uuid4().hex[:8])
        relayctl.install_outbox(db)
        slot = "relay_" + uuid.uuid4().hex[:8]
        prefix = "sd" + uuid.uuid4().hex[:8]
        metrics_port = harness.free_port()

        # debootstrap writes no /etc/hosts: Debian's usual one, so that localhost has a name.
        with open(os.path.join(ROOT, "etc", "hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tip6-localhost ip6-loopback\n")
        etc = os.path.join(ROOT, "etc", "outbox-relay")
        shutil.copy(os.path.join(work, "ca.crt"), etc)
        os.chmod(os.path.join(etc, "ca.crt"), 0o644)
        conf_path = os.path.join(etc, "app.conf")
        with open(conf_path, "w") as f:
            f.write(relay_config(pg, db, kafka, slot, prefix, metrics_port, "/etc/outbox-relay/ca.crt", "info"))
        os.chmod(conf_path, 0o644)
        fd = os.open(os.path.join(etc, "app.pgpassword"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (PG_PASSWORD + "\n").encode())
        os.close(fd)
        host_conf = os.path.join(work, "host.conf")
        with open(host_conf, "w") as f:
            f.write(relay_config(pg, db, kafka, slot, prefix, harness.free_port(), os.path.join(work, "ca.crt"),
                                 "info"))

        c = Container(os.path.join(REPO, "build", "nspawn", "boot.log"))
        c.metrics_port = metrics_port
        state = wait_for(lambda: (lambda r: r[1] in ("running", "degraded") and r[1])(
            c.run("systemctl", "is-system-running")), 90, what="the container's boot")
        _, pid1 = c.run("cat", "/proc/1/comm")
        report("container booted with systemd as PID 1", pid1 == "systemd", "PID 1 %s, system %s" % (pid1, state))
        run_checks(c, pg, db, kafka, slot, prefix, conf_path, host_conf)
        maintainer_scripts(c, "/var/tmp/" + os.path.basename(debs[-1]))
    except Exception as e:  # a harness or container failure is one more FAIL line, then the cleanup
        report("the run itself", False, "%s: %s" % (type(e).__name__, e))
    finally:
        if c is not None:
            journal = c.run("journalctl", "-u", UNIT, "--no-pager", "-o", "short-precise")[1]
            with open(os.path.join(REPO, "build", "nspawn", "journal.txt"), "w") as f:
                f.write(journal + "\n")
            c.poweroff()
        for server in (kafka, pg):
            if server is not None:
                server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    failed = results.count(False)
    print("systemd_run: %d passed, %d failed (journal: build/nspawn/journal.txt)" % (results.count(True), failed))
    return failed


if __name__ == "__main__":
    sys.exit(main())
