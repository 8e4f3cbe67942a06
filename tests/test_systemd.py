# test_systemd.py: the systemd unit verifies and scores 2.0 or better, make install places it, the relay speaks sd_notify.
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from events import consume_events, write_events
from harness import wait_for
import relayctl

UNIT_SRC = os.path.join(relayctl.REPO_ROOT, "systemd", "outbox-relay@.service")
MAN_SRC = os.path.join(relayctl.REPO_ROOT, "docs", "outbox-relay.8")
# The score `systemd-analyze security` must give at most (0 = fully sandboxed, 10 = exposed).
MAX_EXPOSURE = 2.0

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is not installed (Debian: apt-get install systemd)")


def relay_binary():
    """The built relay (built here when missing), so that ExecStart names a real executable."""
    path = os.path.join(relayctl.REPO_ROOT, "relay", "outbox-relay")
    if not os.access(path, os.X_OK):
        subprocess.run(["make", "-s", "-C", relayctl.REPO_ROOT, "relay/outbox-relay"], check=True,
                       stdout=subprocess.DEVNULL)
    return path


@pytest.fixture
def instance_unit(tmp_path):
    """The template as the instance outbox-relay@test.service, ExecStart pointing at the built relay."""
    text = open(UNIT_SRC).read()
    assert "ExecStart=/usr/local/bin/outbox-relay --config /etc/outbox-relay/%i.conf\n" in text, \
        "make install rewrites this exact ExecStart path"
    path = tmp_path / "outbox-relay@test.service"
    path.write_text(text.replace("/usr/local/bin/outbox-relay", relay_binary()))
    return path


def analyze(args, env=None):
    proc = subprocess.run(["systemd-analyze"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=env, timeout=120)
    return proc.returncode, proc.stdout


@needs_analyze
def test_unit_verifies(instance_unit, tmp_path):
    # verify also runs `man outbox-relay(8)` for Documentation=: give it this repository's page.
    env = dict(os.environ)
    args = ["verify"]
    if shutil.which("man"):
        mandir = tmp_path / "man" / "man8"
        mandir.mkdir(parents=True)
        shutil.copy(MAN_SRC, str(mandir))
        env["MANPATH"] = str(tmp_path / "man")
    else:
        args.append("--man=no")
    code, out = analyze(args + [str(instance_unit)], env=env)
    print(out)
    assert code == 0, out
    assert "outbox-relay@test.service" not in out, out  # no warning about our unit


@needs_analyze
def test_security_exposure_is_at_most_2(instance_unit):
    code, out = analyze(["security", "--offline=yes", "--no-pager", str(instance_unit)])
    assert code == 0, out
    m = re.search(r"Overall exposure level for outbox-relay@test\.service: (\d+(?:\.\d+)?)", out)
    assert m, out
    score = float(m.group(1))
    exposed = [line.strip() for line in out.splitlines() if line.lstrip().startswith("\u2717")]
    print("systemd-analyze security: overall exposure %.1f (at most %.1f)" % (score, MAX_EXPOSURE))
    print("what remains exposed:\n  " + "\n  ".join(exposed))
    assert score <= MAX_EXPOSURE, out


def settings(unit):
    """The unit's lines without its comments."""
    return "\n" + "".join(l for l in unit.read_text().splitlines(True) if not l.startswith("#"))


def install(dest, *variables):
    subprocess.run(["make", "-s", "-C", relayctl.REPO_ROOT, "install", "DESTDIR=%s" % dest] + list(variables),
                   check=True, stdout=subprocess.DEVNULL)


def test_make_install_places_the_unit_and_the_man_page(tmp_path):
    # PREFIX=/usr (a distribution's layout): the unit goes to Debian's /lib/systemd/system.
    dest = tmp_path / "usr-root"
    install(dest, "PREFIX=/usr")
    unit = dest / "lib/systemd/system/outbox-relay@.service"
    assert unit.is_file()
    text = settings(unit)
    assert "\nExecStart=/usr/bin/outbox-relay --config /etc/outbox-relay/%i.conf\n" in text
    assert "/usr/local" not in text
    assert "LoadCredential=pgpassword:/etc/outbox-relay/%i.pgpassword\n" in text
    assert "\nRestartPreventExitStatus=2 3\n" in text  # bad configuration; fenced by a newer relay
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    assert (dest / "usr/share/man/man8/outbox-relay.8").is_file()
    assert os.access(dest / "usr/bin/outbox-relay", os.X_OK)

    subprocess.run(["make", "-s", "-C", relayctl.REPO_ROOT, "uninstall", "DESTDIR=%s" % dest, "PREFIX=/usr"],
                   check=True, stdout=subprocess.DEVNULL)
    assert not unit.exists()
    assert not (dest / "usr/share/man/man8/outbox-relay.8").exists()
    assert not (dest / "usr/bin/outbox-relay").exists()


def test_make_install_rewrites_paths_for_other_prefixes(tmp_path):
    # Any other PREFIX: PREFIX/lib/systemd/system (on systemd's search path for /usr/local).
    dest = tmp_path / "opt-root"
    install(dest, "PREFIX=/opt/relay", "SYSCONFDIR=/etc/opt/relay")
    text = settings(dest / "opt/relay/lib/systemd/system/outbox-relay@.service")
    assert "\nExecStart=/opt/relay/bin/outbox-relay --config /etc/opt/relay/outbox-relay/%i.conf\n" in text
    assert "LoadCredential=pgpassword:/etc/opt/relay/outbox-relay/%i.pgpassword\n" in text
    assert "/usr/local/bin" not in text and "/etc/outbox-relay/" not in text
    assert (dest / "opt/relay/share/man/man8/outbox-relay.8").is_file()


class FakeSystemd:
    """The notify socket of a Type=notify service: collects what the relay sends, in order."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="relay-notify-", dir="/tmp")  # sun_path is short
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def wait(self, predicate, timeout=30, what="a notification"):
        """Waits until some message satisfies predicate; returns its index."""
        def found():
            for i, m in enumerate(self.poll()):
                if predicate(m):
                    return i + 1
            return 0
        return wait_for(found, timeout, what=what) - 1

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.mark.skipif(subprocess.run(["pkg-config", "--exists", "libsystemd"]).returncode != 0,
                    reason="libsystemd-dev is not installed: the relay is built without sd_notify")
def test_relay_speaks_the_notify_protocol(outbox, kafka):
    systemd = FakeSystemd()
    try:
        # WatchdogSec=2s: a ping at most every second, and one at least every 1.5 s.
        outbox.relay.env = {"NOTIFY_SOCKET": systemd.path, "WATCHDOG_USEC": "2000000"}
        outbox.relay.start()
        ready = systemd.wait(lambda m: m == "READY=1", what="READY=1")
        outbox.relay.wait_streaming()
        before = systemd.messages[:ready]
        assert "WATCHDOG=1" not in before, "watchdog pings before READY=1: %r" % before
        systemd.wait(lambda m: m.startswith("STATUS=streaming"), what="a streaming STATUS")

        rows = write_events(outbox.db, transactions=3, per_txn=2)
        consume_events(kafka, outbox, len(rows))
        first = len(systemd.poll())
        systemd.wait(lambda m: m == "WATCHDOG=1", timeout=10, what="WATCHDOG=1")
        wait_for(lambda: systemd.poll()[first:].count("WATCHDOG=1") >= 3, 10, what="three pings")

        mark = len(systemd.poll())
        outbox.relay.proc.send_signal(signal.SIGHUP)
        outbox.relay.wait_log("reloaded")
        wait_for(lambda: any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in systemd.poll()[mark:]),
                 10, what="RELOADING=1 with MONOTONIC_USEC")
        reloading = next(i for i, m in enumerate(systemd.messages) if i >= mark and m.startswith("RELOADING=1"))
        wait_for(lambda: "READY=1" in systemd.poll()[reloading:], 10, what="READY=1 after the reload")

        mark = len(systemd.poll())
        assert outbox.relay.stop() == 0
        assert "STOPPING=1" in systemd.poll()[mark:]
        pings = [m for m in systemd.messages if m == "WATCHDOG=1"]
        print("notifications: %d, of which %d watchdog pings; last status: %s" % (
            len(systemd.messages), len(pings), [m for m in systemd.messages if m.startswith("STATUS=")][-1]))
    finally:
        systemd.close()


def test_debian_package_provides_what_the_unit_runs():
    # ExecReload runs /bin/kill, which Debian ships in procps: without it `systemctl reload`
    # fails with 203/EXEC (seen in a minimal Debian 12 under systemd-nspawn, make systemd-test).
    control = open(os.path.join(relayctl.REPO_ROOT, "debian", "control")).read()
    depends = re.search(r"^Depends: (.*)$", control, re.M).group(1)
    unit = open(UNIT_SRC).read()
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit
    assert "procps" in [d.strip() for d in depends.split(",")], depends
    # The package installs with make install's PREFIX=/usr, which rewrites ExecStart to /usr/bin.
    rules = open(os.path.join(relayctl.REPO_ROOT, "debian", "rules")).read()
    assert "$(MAKE) install DESTDIR=$(CURDIR)/debian/outbox-relay PREFIX=/usr" in rules
