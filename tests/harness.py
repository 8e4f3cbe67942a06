# Test harness: throwaway PostgreSQL (wal2json) and single-node Kafka (KRaft) servers for the outbox-relay tests.
"""Start, restart and clean up private PostgreSQL and Kafka servers on loopback.

Importable (see conftest.py) and usable from the command line:

    /usr/bin/python3 tests/harness.py up     # prints PG_DSN=... and KAFKA_BOOTSTRAP=...
    /usr/bin/python3 tests/harness.py jars   # fetches the Kafka jars into .cache/kafka/libs
"""

import argparse
import atexit
import fcntl
import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_BIN = os.environ.get("OUTBOX_PG_BIN", "/usr/lib/postgresql/15/bin")
OUTPUT_PLUGINS = "pgoutput, test_decoding, wal2json"
UNPRIVILEGED_FALLBACK_USER = "outbox-test"


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def free_port():
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout, interval=0.1, what="condition"):
    """Poll condition() until it returns a true value (returned) or raise TimeoutError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def tail(path, lines=40):
    """Return the last lines of a text file (for error messages), or '' if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def make_temp_dir(prefix):
    """Create a private temporary directory under $TMPDIR (or /tmp)."""
    return tempfile.mkdtemp(prefix=prefix)


# ---------------------------------------------------------------------------
# Cleanup of everything started by this process (atexit + SIGTERM/SIGINT)
# ---------------------------------------------------------------------------

_live_servers = []
_live_lock = threading.Lock()
_handlers_installed = False


def _register(server):
    """Remember a server so that cleanup_all() removes it, and install the exit hooks once."""
    global _handlers_installed
    with _live_lock:
        if server not in _live_servers:
            _live_servers.append(server)
        if _handlers_installed:
            return
        _handlers_installed = True
    atexit.register(cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            _install_signal_handler(sig)


def _unregister(server):
    with _live_lock:
        if server in _live_servers:
            _live_servers.remove(server)


def _install_signal_handler(sig):
    """Chain a handler that cleans up all servers before the previous handler runs."""
    previous = signal.getsignal(sig)
    if previous == signal.SIG_IGN:  # e.g. SIGINT in a background job: leave it ignored
        return

    def handler(signum, frame):
        cleanup_all()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    signal.signal(sig, handler)


def cleanup_all():
    """Stop and remove every server this process started and has not cleaned up yet."""
    with _live_lock:
        servers = list(reversed(_live_servers))
    for server in servers:
        try:
            server.cleanup()
        except Exception as e:  # keep going: the other servers must go too
            print("harness: cleanup of %r failed: %s" % (server, e), file=sys.stderr)


# ---------------------------------------------------------------------------
# Kafka jars
# ---------------------------------------------------------------------------

def ensure_kafka_jars(repo_root=REPO_ROOT):
    """Make sure <repo>/.cache/kafka/libs holds the jars of tests/kafka/pom.xml; return that directory.

    A marker file holding the pom's hash is written after a successful fetch,
    so a missing, partial or outdated cache is fetched again with Maven.
    """
    pom = os.path.join(repo_root, "tests", "kafka", "pom.xml")
    cache = os.path.join(repo_root, ".cache", "kafka")
    libs = os.path.join(cache, "libs")
    marker = os.path.join(cache, "libs.ok")
    with open(pom, "rb") as f:
        want = hashlib.sha256(f.read()).hexdigest()

    def complete():
        try:
            with open(marker) as f:
                have = f.read().strip()
        except OSError:
            return False
        return have == want and any(n.startswith("kafka_2.13-") for n in os.listdir(libs))

    if complete():
        return libs
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be fetching right now
        if complete():
            return libs
        staging = libs + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = ["mvn", "-q", "-B", "-f", pom, "dependency:copy-dependencies",
               "-DoutputDirectory=" + staging, "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("fetching Kafka jars failed (%s):\n%s" % (" ".join(cmd), proc.stdout[-4000:]))
        shutil.rmtree(libs, ignore_errors=True)
        os.rename(staging, libs)
        with open(marker, "w") as f:
            f.write(want + "\n")
    return libs


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def _unprivileged_user():
    """Return the pwd entry PostgreSQL runs as, or None when we are not root (then we run it ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", UNPRIVILEGED_FALLBACK_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    UNPRIVILEGED_FALLBACK_USER], check=True)
    return pwd.getpwnam(UNPRIVILEGED_FALLBACK_USER)


class Database:
    """One database on a Postgres server (what the `db` fixture yields)."""

    def __init__(self, pg, name):
        self.pg = pg
        self.name = name
        self.dsn = pg.dsn(dbname=name)

    def connect(self, autocommit=True):
        """Return a psycopg2 connection to this database."""
        return self.pg.connect(autocommit=autocommit, dbname=self.name)

    def execute(self, sql, params=None):
        """Run one statement in this database (autocommit)."""
        return self.pg.execute(sql, params, dbname=self.name)

    def query(self, sql, params=None):
        """Run one query in this database and return all rows."""
        return self.pg.query(sql, params, dbname=self.name)

    def __repr__(self):
        return "Database(%r)" % self.name


class Postgres:
    """A private PostgreSQL server with wal_level=logical, listening on 127.0.0.1 and a socket in its temp dir."""

    host = "127.0.0.1"

    def __init__(self, bin_dir=PG_BIN, extra_settings=None, hba=None, admin_via_socket=False):
        """extra_settings: more postgresql.conf settings {name: value as written in the file};
        hba: the whole text of pg_hba.conf (default: initdb's, trust for everything);
        admin_via_socket: this object's own connections (dsn, connect, Database.dsn) use the
        Unix socket instead of 127.0.0.1 (for an hba that does not trust loopback TCP)."""
        self.bin_dir = bin_dir
        self.extra_settings = dict(extra_settings or {})
        self.hba = hba
        self.admin_via_socket = admin_via_socket
        self.dir = None
        self.port = None
        self.data_dir = None
        self.log_path = None
        self.output_plugin_libraries = None  # value after start, None if the server has no such GUC
        self._user = _unprivileged_user()
        self._running = False
        self.primary = None  # the Postgres this one streams from (standby())
        self.application_name = None  # its name in the primary's pg_stat_replication

    def __repr__(self):
        return "Postgres(port=%s, dir=%s)" % (self.port, self.dir)

    # -- running the server binaries -------------------------------------

    def _run(self, args, check=True, **kw):
        """Run a PostgreSQL binary as the unprivileged user; return the CompletedProcess."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.STDOUT)
        env = dict(os.environ, LC_ALL="C", LANG="C", PGTZ="UTC")
        if self._user is not None:
            env.update(HOME=self.dir, USER=self._user.pw_name, LOGNAME=self._user.pw_name)
            kw.update(user=self._user.pw_uid, group=self._user.pw_gid, extra_groups=[])
        cmd = [os.path.join(self.bin_dir, args[0])] + list(args[1:])
        proc = subprocess.run(cmd, env=env, cwd=self.dir, text=True, start_new_session=True, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError("%s failed (exit %d):\n%s\n%s" % (
                " ".join(cmd), proc.returncode, proc.stdout or "", tail(self.log_path or "")))
        return proc

    def _init(self):
        """Create the temp dir, run initdb and write the configuration."""
        self.dir = make_temp_dir("outbox-relay-pg-")
        if self._user is not None:
            os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self._run(["initdb", "-D", self.data_dir, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--no-locale"])
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": "'%s'" % self.dir,
            "wal_level": "logical",
            "max_replication_slots": "16",
            "max_wal_senders": "16",
            "fsync": "off",
            "full_page_writes": "off",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_replication_commands": "on",
            "timezone": "'UTC'",
            # The relay's recovery from the outbox table draws its boundary by commit time.
            "track_commit_timestamp": "on",
        }
        # PostgreSQL 15.19+ only loads output plugins listed in output_plugin_libraries.
        if self._run(["postgres", "-C", "output_plugin_libraries", "-D", self.data_dir],
                     check=False).returncode == 0:
            settings["output_plugin_libraries"] = "'%s'" % OUTPUT_PLUGINS
        settings.update(self.extra_settings)
        if self.hba is not None:
            with open(os.path.join(self.data_dir, "pg_hba.conf"), "w") as f:
                f.write(self.hba)
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a") as f:
            f.write("\n# outbox-relay test harness\n")
            for key, value in settings.items():
                f.write("%s = %s\n" % (key, value))

    def start(self):
        """Start the server (initialising a fresh temp dir the first time) and wait until it accepts connections."""
        if self._running:
            return self
        _register(self)
        if self.dir is None:
            self._init()
        self._run(["pg_ctl", "start", "-w", "-t", "60", "-D", self.data_dir, "-l", self.log_path],
                  stdin=subprocess.DEVNULL)
        self._running = True
        wait_for(self._accepts_connections, 30, what="PostgreSQL to accept connections")
        self._enable_output_plugins()
        return self

    def _accepts_connections(self):
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def _enable_output_plugins(self):
        """Make sure wal2json is allowed by output_plugin_libraries when the server has that GUC."""
        rows = self.query("SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'")
        if not rows:
            self.output_plugin_libraries = None
            return
        if "wal2json" not in rows[0][0]:
            self.execute("ALTER SYSTEM SET output_plugin_libraries = " + OUTPUT_PLUGINS)
            self.execute("SELECT pg_reload_conf()")
            wait_for(lambda: "wal2json" in self.query("SHOW output_plugin_libraries")[0][0], 10,
                     what="output_plugin_libraries to include wal2json")
        self.output_plugin_libraries = self.query("SHOW output_plugin_libraries")[0][0]

    def stop(self, mode="fast", timeout=60):
        """Stop the server with pg_ctl (mode: smart, fast or immediate); the data dir is kept.

        True when it stopped within timeout seconds; False when it had to be stopped immediately.
        """
        if not self._running:
            return True
        proc = self._run(["pg_ctl", "stop", "-w", "-t", str(timeout), "-m", mode, "-D", self.data_dir],
                         check=mode == "immediate")
        if proc.returncode != 0:
            # A fast stop waits for walsenders until their client confirms the end of WAL; a
            # client stuck elsewhere must not leave the server half stopped for later tests.
            print("harness: pg_ctl stop -m %s timed out; stopping immediately:\n%s\n%s"
                  % (mode, proc.stdout or "", tail(self.log_path or "")), flush=True)
            self._run(["pg_ctl", "stop", "-w", "-t", "60", "-m", "immediate", "-D", self.data_dir])
        self._running = False
        return proc.returncode == 0

    def restart(self, mode="fast"):
        """Stop (fast or immediate, i.e. crash) and start again on the same data dir and port."""
        self.stop(mode)
        return self.start()

    def is_running(self):
        """True when the server was started and not stopped through this object."""
        return self._running

    def ensure_running(self):
        """Start the server again if a test left it stopped."""
        if not self._running and self.dir is not None:
            self.start()

    def cleanup(self):
        """Stop the server (immediate) and remove its temp dir."""
        if self.dir is None:
            _unregister(self)
            return
        if self._running or os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            try:
                self._run(["pg_ctl", "stop", "-w", "-t", "30", "-m", "immediate", "-D", self.data_dir])
            except Exception:
                self._kill_postmaster()
        self._running = False
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        _unregister(self)

    def _kill_postmaster(self):
        """Last resort: SIGKILL the postmaster named in postmaster.pid (its children then exit)."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    # -- clients ----------------------------------------------------------

    def dsn(self, dbname="postgres", user="postgres"):
        """Return a libpq conninfo string for this server."""
        host = self.dir if self.admin_via_socket else self.host
        return "host=%s port=%d dbname=%s user=%s" % (host, self.port, dbname, user)

    def connect(self, autocommit=True, dbname="postgres", user="postgres"):
        """Return a new psycopg2 connection."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(dbname=dbname, user=user), connect_timeout=5)
        conn.autocommit = autocommit
        return conn

    def execute(self, sql, params=None, dbname="postgres"):
        """Run one statement on a fresh autocommit connection; return the affected row count."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.rowcount
        finally:
            conn.close()

    def query(self, sql, params=None, dbname="postgres"):
        """Run one query on a fresh autocommit connection; return all rows as a list of tuples."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()

    # -- helpers for tests -------------------------------------------------

    def create_database(self, name=None, encoding=None):
        """CREATE DATABASE (unique name by default) and return a Database.

        encoding: e.g. "SQL_ASCII" (from template0, C locale); default the cluster's UTF8."""
        name = name or "test_" + uuid.uuid4().hex[:12]
        if encoding:
            self.execute('CREATE DATABASE "%s" TEMPLATE template0 ENCODING \'%s\' LC_COLLATE \'C\' '
                         'LC_CTYPE \'C\'' % (name, encoding))
        else:
            self.execute('CREATE DATABASE "%s"' % name)
        return Database(self, name)

    def drop_database(self, name):
        """Drop a database after dropping its replication slots and ending its connections."""
        deadline = time.monotonic() + 30
        while True:
            self.query("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots "
                       "WHERE database = %s AND active_pid IS NOT NULL", (name,))
            try:
                self.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                           "WHERE database = %s", (name,))
                break
            except Exception:  # a slot became active again in between: retry
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
        self.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def kill_walsenders(self, dbname=None):
        """Terminate walsender backends (all, or those of one database) and wait for them; return their pids."""
        sql = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender'"
        params = None
        if dbname is not None:
            sql += " AND datname = %s"
            params = (dbname,)
        pids = [row[0] for row in self.query(sql, params)]
        for pid in pids:
            self.query("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        return pids

    # -- streaming replication and slot loss -------------------------------

    def standby(self, extra_settings=None, timeout=60):
        """Return a new Postgres, a streaming standby of this running server, started.

        Made by pg_basebackup -R (WAL streamed along, as the unprivileged user) into its own
        temp dir, on its own port; extra_settings are appended to its postgresql.conf. Returns
        once this server's pg_stat_replication shows it streaming. It is cleaned up like any
        other server. PostgreSQL 15 copies no replication slot to it: a logical slot of this
        server does not exist there (the failover case of the relay's recovery).
        .primary is this server and .application_name its name in pg_stat_replication.
        """
        sb = Postgres(bin_dir=self.bin_dir, extra_settings=extra_settings,
                      admin_via_socket=self.admin_via_socket)
        sb.primary = self
        sb.application_name = "standby_" + uuid.uuid4().hex[:8]
        _register(sb)  # from here on cleanup_all() removes its dir, even if the copy fails
        sb.dir = make_temp_dir("outbox-relay-pg-standby-")
        if sb._user is not None:
            os.chown(sb.dir, sb._user.pw_uid, sb._user.pw_gid)
        sb.data_dir = os.path.join(sb.dir, "data")
        sb.log_path = os.path.join(sb.dir, "postgres.log")
        sb.port = free_port()
        while sb.port == self.port:
            sb.port = free_port()
        host = self.dir if self.admin_via_socket else self.host
        conninfo = "host=%s port=%d user=postgres application_name=%s" % (host, self.port, sb.application_name)
        # -R writes standby.signal and primary_conninfo (with the application_name) to
        # postgresql.auto.conf; pg_replslot's contents are not copied.
        sb._run(["pg_basebackup", "-D", sb.data_dir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
                 "-d", conninfo])
        settings = {"port": str(sb.port), "unix_socket_directories": "'%s'" % sb.dir}
        settings.update(sb.extra_settings)
        with open(os.path.join(sb.data_dir, "postgresql.conf"), "a") as f:
            f.write("\n# outbox-relay test harness: standby of port %d\n" % self.port)
            for key, value in settings.items():
                f.write("%s = %s\n" % (key, value))
        sb.start()
        wait_for(lambda: self.query("SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                                    "AND state = 'streaming'", (sb.application_name,)),
                 timeout, what="standby %s streaming from port %d" % (sb.application_name, self.port))
        return sb

    def is_in_recovery(self):
        """True while this server is a standby (pg_is_in_recovery())."""
        return self.query("SELECT pg_is_in_recovery()")[0][0]

    def wait_replayed(self, lsn=None, timeout=30):
        """On a standby: wait until it has replayed WAL up to lsn (text, e.g. '0/3000060'; default
        the primary's pg_current_wal_lsn() now, so the primary must be running). Returns lsn."""
        if lsn is None:
            lsn = self.primary.query("SELECT pg_current_wal_lsn()::text")[0][0]
        wait_for(lambda: self.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,))[0][0],
                 timeout, what="standby on port %d to replay up to %s" % (self.port, lsn))
        return lsn

    def promote(self, timeout=60):
        """Promote this standby (pg_ctl promote) and wait until it accepts writes
        (pg_is_in_recovery() false). It no longer follows its primary."""
        self._run(["pg_ctl", "promote", "-w", "-t", str(timeout), "-D", self.data_dir])
        wait_for(lambda: not self.is_in_recovery(), timeout, what="standby on port %d promoted" % self.port)
        self.primary = None
        return self

    def invalidate_slot(self, slot, timeout=60):
        """Make an inactive replication slot lost (pg_replication_slots.wal_status = 'lost'), as
        max_slot_wal_keep_size does to a slot that lags too far; its consumer must be stopped.

        When the server keeps WAL for slots without limit (max_slot_wal_keep_size = -1, the
        default), the limit is set to 1MB by ALTER SYSTEM and reload for the duration and reset
        afterwards. wal_keep_size must be 0 (the default). Then, in rounds: a small logical
        message (in database postgres), pg_switch_wal(), CHECKPOINT (slots are invalidated at
        checkpoints), until the slot is lost or timeout seconds passed (TimeoutError). Any other
        inactive slot lagging behind on this server is lost too, and in PostgreSQL 15 an active
        one as well (its walsender is terminated): use a server of the test's own.
        """
        def status():
            rows = self.query("SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = %s",
                              (slot,))
            if not rows:
                raise ValueError("no replication slot %r on port %d" % (slot, self.port))
            return rows[0]

        if status()[0]:
            raise RuntimeError("slot %r is active: stop its consumer before invalidating it" % slot)
        keep = self.query("SHOW wal_keep_size")[0][0]
        if keep not in ("0", "0MB", "0kB"):
            raise RuntimeError("wal_keep_size is %s: the server keeps WAL for standbys, set it to 0" % keep)
        unlimited = self.query("SHOW max_slot_wal_keep_size")[0][0] == "-1"
        if unlimited:
            self.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
            self.execute("SELECT pg_reload_conf()")
            wait_for(lambda: self.query("SHOW max_slot_wal_keep_size")[0][0] == "1MB", 10,
                     what="max_slot_wal_keep_size = 1MB after the reload")
        try:
            def lost():
                if status()[1] == "lost":
                    return True
                self.execute("SELECT pg_logical_emit_message(false, 'harness-wal-filler', repeat('x', 1000))")
                self.execute("SELECT pg_switch_wal()")
                self.execute("CHECKPOINT")
                return status()[1] == "lost"
            wait_for(lost, timeout, interval=0.05, what="slot %r invalidated (wal_status lost)" % slot)
        finally:
            if unlimited:
                self.execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
                self.execute("SELECT pg_reload_conf()")


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------

LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.org.apache.kafka.raft=WARN
log4j.logger.org.apache.kafka.storage=WARN
log4j.logger.kafka.log=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
log4j.logger.org.apache.kafka.common.metrics=WARN
"""


def _quiet_kafka_client_config():
    """librdkafka settings that keep expected connection errors out of the test output."""
    return {"log_level": 0, "error_cb": lambda err: None}


class Kafka:
    """A private single-node Kafka broker+controller (KRaft) listening on 127.0.0.1."""

    def __init__(self, repo_root=REPO_ROOT, start_timeout=90, ssl_properties=None, sasl_users=None):
        """ssl_properties: when given, the broker also gets an SSL listener on a free port
        (self.ssl_port, advertised as localhost; self.ssl_bootstrap) with these ssl.* properties
        added to server.properties; the PLAINTEXT listener stays for the harness's clients.
        sasl_users: {user: password}; when given, the broker also gets a SASL_PLAINTEXT listener
        (mechanism PLAIN; self.sasl_port, self.sasl_bootstrap) and the StandardAuthorizer: SASL
        users may do only what ACLs allow (self.add_acls), while the PLAINTEXT and CONTROLLER
        listeners' principal (User:ANONYMOUS, the harness's own clients) is a super user."""
        self.repo_root = repo_root
        self.start_timeout = start_timeout
        self.ssl_properties = None if ssl_properties is None else dict(ssl_properties)
        self.ssl_port = None
        self.ssl_bootstrap = None
        self.sasl_users = None if sasl_users is None else dict(sasl_users)
        self.sasl_port = None
        self.sasl_bootstrap = None
        self.dir = None
        self.port = None
        self.controller_port = None
        self.bootstrap = None
        self.log_path = None     # broker log (log4j)
        self.stdout_path = None  # JVM stdout/stderr
        self.proc = None
        self._libs = None
        self._admin = None

    def __repr__(self):
        return "Kafka(bootstrap=%s, dir=%s)" % (self.bootstrap, self.dir)

    def _java(self, main, *args):
        """Return the java command line running a Kafka main class."""
        return ["java", "-Xmx512m", "-Djava.awt.headless=true",
                "-Dlog4j.configuration=file:" + os.path.join(self.dir, "log4j.properties"),
                "-cp", os.path.join(self._libs, "*"), main] + list(args)

    def _init(self):
        """Create the temp dir, write server.properties and log4j.properties, format the storage."""
        self._libs = ensure_kafka_jars(self.repo_root)
        self.dir = make_temp_dir("outbox-relay-kafka-")
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.bootstrap = "127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.dir, "server.log")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": "1@127.0.0.1:%d" % self.controller_port,
            "listeners": "PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d" % (self.port, self.controller_port),
            "advertised.listeners": "PLAINTEXT://127.0.0.1:%d" % self.port,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": os.path.join(self.dir, "data"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "3",
            "auto.create.topics.enable": "true",
            # After kill() the restarted broker cannot register until its old session expires
            # (default 9 s, about 14 s to restart); shorter keeps crash tests quick.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
        }
        if self.ssl_properties is not None:
            self.ssl_port = free_port()
            while self.ssl_port in (self.port, self.controller_port):
                self.ssl_port = free_port()
            self.ssl_bootstrap = "localhost:%d" % self.ssl_port
            props["listeners"] += ",SSL://127.0.0.1:%d" % self.ssl_port
            props["advertised.listeners"] += ",SSL://localhost:%d" % self.ssl_port
            props["listener.security.protocol.map"] += ",SSL:SSL"
            props.update(self.ssl_properties)
        if self.sasl_users is not None:
            self._add_sasl(props)
        self.properties_path = os.path.join(self.dir, "server.properties")
        with open(self.properties_path, "w") as f:
            for key, value in props.items():
                f.write("%s=%s\n" % (key, value))
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write(LOG4J_PROPERTIES.format(log=self.log_path))
        out = subprocess.run(self._java("kafka.tools.StorageTool", "random-uuid"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=True)
        cluster_id = out.stdout.strip().splitlines()[-1]
        proc = subprocess.run(self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                                         "-c", self.properties_path),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("kafka storage format failed:\n" + proc.stdout)

    def _add_sasl(self, props):
        """The SASL_PLAINTEXT listener (PLAIN, users from self.sasl_users) and the authorizer."""
        taken = {self.port, self.controller_port, self.ssl_port}
        self.sasl_port = free_port()
        while self.sasl_port in taken:
            self.sasl_port = free_port()
        self.sasl_bootstrap = "127.0.0.1:%d" % self.sasl_port
        props["listeners"] += ",SASL_PLAINTEXT://127.0.0.1:%d" % self.sasl_port
        props["advertised.listeners"] += ",SASL_PLAINTEXT://127.0.0.1:%d" % self.sasl_port
        props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        props["sasl.enabled.mechanisms"] = "PLAIN"
        users = " ".join('user_%s="%s"' % (u, pw) for u, pw in sorted(self.sasl_users.items()))
        props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required %s;" % users)
        props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
        props["super.users"] = "User:ANONYMOUS"
        props["allow.everyone.if.no.acl.found"] = "false"

    def sasl_config(self, user, password, extra=None):
        """librdkafka settings of a client of the SASL listener as user."""
        conf = {"bootstrap.servers": self.sasl_bootstrap, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": "PLAIN", "sasl.username": user, "sasl.password": password}
        conf.update(_quiet_kafka_client_config())
        conf.update(extra or {})
        return conf

    def acl(self, *args):
        """Runs Kafka's ACL tool (kafka.admin.AclCommand, as bin/kafka-acls.sh) against the
        PLAINTEXT listener (a super user), e.g. acl("--add", "--allow-principal", "User:relay",
        "--operation", "All", "--topic", "*"); raises with its output when it fails. (Debian's
        confluent-kafka has no ACL admin API.) The StandardAuthorizer applies it at once."""
        proc = subprocess.run(self._java("kafka.admin.AclCommand", "--bootstrap-server", self.bootstrap,
                                         *args),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError("kafka-acls %s failed:\n%s" % (" ".join(args), proc.stdout))
        return proc.stdout

    def start(self):
        """Start the broker (formatting a fresh temp dir the first time) and wait until it serves metadata."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        _register(self)
        if self.dir is None:
            self._init()
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(self._java("kafka.Kafka", self.properties_path),
                                         cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._ready, self.start_timeout, interval=0.2, what="Kafka broker at " + self.bootstrap)
        except TimeoutError as e:
            self.kill()
            raise RuntimeError("%s\n--- %s:\n%s\n--- %s:\n%s" % (
                e, self.stdout_path, tail(self.stdout_path), self.log_path, tail(self.log_path)))
        return self

    def _ready(self):
        """True when the broker answers a metadata request listing itself; raise if the JVM died."""
        if self.proc.poll() is not None:
            raise RuntimeError("Kafka exited with %s during start:\n%s\n%s" % (
                self.proc.returncode, tail(self.stdout_path), tail(self.log_path)))
        try:
            md = self.admin().list_topics(timeout=1)
        except Exception:
            return False
        return 1 in md.brokers

    def is_running(self):
        """True while the broker process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self):
        """Start the broker again if a test left it stopped."""
        if not self.is_running() and self.dir is not None:
            self.start()

    def stop(self, timeout=30):
        """Stop the broker with SIGTERM (controlled shutdown), SIGKILL after timeout seconds; dirs are kept."""
        if not self.is_running():
            return
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)  # a paused broker must run to shut down
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL the broker (a crash); dirs are kept."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        self.proc.wait()

    def pause(self):
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self):
        """Let a paused broker go on (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def restart(self):
        """Controlled stop and start again on the same dirs and ports."""
        self.stop()
        return self.start()

    def cleanup(self):
        """Kill the broker and remove its temp dir."""
        self.kill()
        self._admin = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        _unregister(self)

    # -- clients ----------------------------------------------------------

    def config(self, extra=None):
        """Return a librdkafka config dict for this broker, updated with the dict extra."""
        conf = {"bootstrap.servers": self.bootstrap}
        conf.update(_quiet_kafka_client_config())
        conf.update(extra or {})
        return conf

    def admin(self):
        """Return this broker's shared confluent_kafka AdminClient (it reconnects by itself after restarts)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient
            self._admin = AdminClient(self.config())
        return self._admin

    def producer(self, extra=None):
        """Return a confluent_kafka Producer; extra is more config, e.g. {"transactional.id": "x"}."""
        from confluent_kafka import Producer
        return Producer(self.config(extra))

    def topic_partitions(self, topic):
        """Return the partition ids of a topic, or [] if it does not exist (never auto-creates it)."""
        md = self.admin().list_topics(timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return []
        return sorted(t.partitions)

    def create_topic(self, name, partitions=3, config=None, timeout=30):
        """Create a topic (replication factor 1) and wait until all its partitions have a leader."""
        from confluent_kafka.admin import NewTopic
        from confluent_kafka import KafkaError, KafkaException
        futures = self.admin().create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
            operation_timeout=timeout, request_timeout=timeout)
        try:
            futures[name].result()
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

        def ready():
            md = self.admin().list_topics(topic=name, timeout=5)
            t = md.topics.get(name)
            return (t is not None and t.error is None and len(t.partitions) == partitions
                    and all(p.leader >= 0 for p in t.partitions.values()))
        wait_for(ready, timeout, interval=0.1, what="topic %s" % name)

    def consume(self, topics, until=None, timeout=30, isolation="read_committed", from_beginning=True):
        """Read messages of all partitions of topics and return them as dicts.

        until: None = stop at the current end of every partition (for
        read_committed, the last stable offset); an int = stop once that many
        messages arrived; a callable(messages) -> bool = stop once it is true.
        Returns what was read when timeout seconds pass first (no exception).
        Topics that do not exist yet are waited for within the timeout.
        Each dict: topic, partition, offset, key (bytes), value (bytes),
        headers (list of (name, bytes)), timestamp.
        """
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition, OFFSET_BEGINNING, OFFSET_END
        if isinstance(topics, str):
            topics = [topics]
        deadline = time.monotonic() + timeout
        parts = {}
        while True:
            for t in topics:
                if t not in parts:
                    ids = self.topic_partitions(t)
                    if ids:
                        parts[t] = ids
            if len(parts) == len(topics) or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not parts:
            return []

        consumer = Consumer(self.config({
            "group.id": "harness-" + uuid.uuid4().hex,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "fetch.wait.max.ms": 100,
        }))
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        assignment = [TopicPartition(t, p, start) for t, ids in parts.items() for p in ids]
        consumer.assign(assignment)
        at_eof = set()
        messages = []

        def done():
            if until is None:
                return len(parts) == len(topics) and len(at_eof) == len(assignment)
            if callable(until):
                return until(messages)
            return len(messages) >= until

        try:
            while not done() and time.monotonic() < deadline:
                msg = consumer.poll(min(0.2, max(0.0, deadline - time.monotonic())))
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add((msg.topic(), msg.partition()))
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    continue  # transient (e.g. broker restarting): keep polling until the deadline
                at_eof.discard((msg.topic(), msg.partition()))
                messages.append({
                    "topic": msg.topic(),
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "key": msg.key(),
                    "value": msg.value(),
                    "headers": list(msg.headers() or []),
                    "timestamp": msg.timestamp()[1],
                })
        finally:
            consumer.close()
        return messages


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _cmd_up(args):
    """Start the servers, print how to reach them, wait for stdin EOF or a signal, clean up."""
    try:
        if not args.no_pg:
            t0 = time.monotonic()
            pg = Postgres()
            pg.start()
            print("PG_DSN=%s" % pg.dsn(), flush=True)
            print("PG_LOG=%s" % pg.log_path, flush=True)
            print("harness: PostgreSQL up in %.1f s" % (time.monotonic() - t0), file=sys.stderr, flush=True)
        if not args.no_kafka:
            t0 = time.monotonic()
            kafka = Kafka()
            kafka.start()
            print("KAFKA_BOOTSTRAP=%s" % kafka.bootstrap, flush=True)
            print("KAFKA_LOG=%s" % kafka.log_path, flush=True)
            print("harness: Kafka up in %.1f s" % (time.monotonic() - t0), file=sys.stderr, flush=True)
        print("READY", flush=True)
        if args.wait == "stdin":
            while sys.stdin.buffer.read1(4096):
                pass
        else:
            while True:
                signal.pause()
    except KeyboardInterrupt:
        return 130
    finally:
        cleanup_all()
    return 0


def _cmd_jars(args):
    print(ensure_kafka_jars(REPO_ROOT))
    return 0


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PostgreSQL and Kafka until stdin closes or SIGTERM/SIGINT")
    up.add_argument("--no-pg", action="store_true", help="do not start PostgreSQL")
    up.add_argument("--no-kafka", action="store_true", help="do not start Kafka")
    up.add_argument("--wait", choices=("stdin", "signal"), default="stdin",
                    help="stop when stdin closes (default) or only on SIGTERM/SIGINT")
    up.set_defaults(func=_cmd_up)
    jars = sub.add_parser("jars", help="fetch the Kafka jars if needed and print their directory")
    jars.set_defaults(func=_cmd_jars)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
