# Test harness: throwaway PostgreSQL (wal2json), Patroni clusters, single-node Kafka (KRaft) and a schema registry for the outbox-relay tests.
"""Start, restart and clean up private PostgreSQL servers, Patroni clusters (etcd and PostgreSQL
nodes) and Kafka brokers on loopback.

Importable (see conftest.py) and usable from the command line:

    /usr/bin/python3 tests/harness.py up     # prints PG_DSN=... and KAFKA_BOOTSTRAP=...
    /usr/bin/python3 tests/harness.py up --patroni --no-kafka   # a Patroni cluster (PatroniCluster)
    /usr/bin/python3 tests/harness.py jars   # fetches the Kafka jars into .cache/kafka/VERSION/libs
    KAFKA_VERSION=4.4.0 /usr/bin/python3 tests/harness.py up   # the same against a Kafka 4.4.0 broker
    /usr/bin/python3 tests/harness.py jars --registry   # and builds the schema registry (.cache/registry)
"""

import argparse
import atexit
import fcntl
import hashlib
import os
import pwd
import re
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

DEFAULT_KAFKA_VERSION = "3.9.1"
TESTED_KAFKA_VERSIONS = ("3.9.1", "4.4.0")  # tests/install-deps.sh fetches both


def kafka_version():
    """The broker version the harness runs: env KAFKA_VERSION (e.g. 4.4.0), else 3.9.1."""
    return os.environ.get("KAFKA_VERSION") or DEFAULT_KAFKA_VERSION


def kafka_major(version):
    """The major number of a Kafka version string ("4.4.0" -> 4)."""
    return int(version.split(".")[0])


def ensure_kafka_jars(repo_root=REPO_ROOT, version=None):
    """Make sure <repo>/.cache/kafka/<version>/libs holds the jars of tests/kafka/pom.xml for that
    broker version (default kafka_version()); return that directory.

    Each version has its own directory, so several coexist in the shared cache. A marker file
    holding the hash of the pom and the version is written after a successful fetch, so a missing,
    partial or outdated cache is fetched again with Maven. 4.x brokers log through log4j2 and have their
    ACL tool in kafka-tools (the pom's profile kafka4); 3.x log through reload4j.
    """
    version = version or kafka_version()
    if not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
        raise ValueError("KAFKA_VERSION must look like 3.9.1 or 4.4.0, not %r" % version)
    pom = os.path.join(repo_root, "tests", "kafka", "pom.xml")
    cache = os.path.join(repo_root, ".cache", "kafka", version)
    libs = os.path.join(cache, "libs")
    marker = os.path.join(cache, "libs.ok")
    with open(pom, "rb") as f:
        want = hashlib.sha256(f.read() + version.encode()).hexdigest()

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
               "-DoutputDirectory=" + staging, "-DincludeScope=runtime", "-Dkafka.version=" + version]
        if kafka_major(version) >= 4:
            cmd.append("-Pkafka4")
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("fetching Kafka jars failed (%s):\n%s" % (" ".join(cmd), proc.stdout[-4000:]))
        shutil.rmtree(libs, ignore_errors=True)
        os.rename(staging, libs)
        with open(marker, "w") as f:
            f.write(want + "\n")
    return libs


# ---------------------------------------------------------------------------
# Schema registry (Apicurio Registry 2.4.2.Final, built from Maven Central)
# ---------------------------------------------------------------------------

def ensure_registry_build(repo_root=REPO_ROOT):
    """Make sure <repo>/.cache/registry/app holds Apicurio Registry built from tests/registry
    (the runner jar and its lib/); return the runner jar's path.

    Built with Maven (quarkus-maven-plugin) in a copy of tests/registry under .cache/registry,
    about 15-45 s and 210 MB of downloads from an empty ~/.m2; a marker holding the hash of the
    project's files is written after a successful build, so a missing, partial or outdated build
    is made again.
    """
    project = os.path.join(repo_root, "tests", "registry")
    cache = os.path.join(repo_root, ".cache", "registry")
    app = os.path.join(cache, "app")
    marker = os.path.join(cache, "app.ok")
    digest = hashlib.sha256()
    for rel in ("pom.xml", os.path.join("src", "main", "resources", "application.properties")):
        with open(os.path.join(project, rel), "rb") as f:
            digest.update(f.read())
    want = digest.hexdigest()

    def runner():
        try:
            return next(os.path.join(app, n) for n in os.listdir(app) if n.endswith("-runner.jar"))
        except (OSError, StopIteration):
            return None

    def complete():
        try:
            with open(marker) as f:
                have = f.read().strip()
        except OSError:
            return False
        return have == want and runner() is not None

    if complete():
        return runner()
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building right now
        if complete():
            return runner()
        build = os.path.join(cache, "build.tmp")
        shutil.rmtree(build, ignore_errors=True)
        shutil.copytree(project, build)
        cmd = ["mvn", "-q", "-B", "-ntp", "-f", os.path.join(build, "pom.xml"), "package", "-DskipTests"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("building the schema registry failed (%s):\n%s" % (" ".join(cmd), proc.stdout[-4000:]))
        target = os.path.join(build, "target")
        staging = app + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        for n in os.listdir(target):
            if n.endswith("-runner.jar"):
                shutil.copy2(os.path.join(target, n), staging)
        shutil.copytree(os.path.join(target, "lib"), os.path.join(staging, "lib"))
        shutil.rmtree(app, ignore_errors=True)
        os.rename(staging, app)
        shutil.rmtree(build, ignore_errors=True)
        with open(marker, "w") as f:
            f.write(want + "\n")
    return runner()


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


class Statements:
    """execute() and query() on a fresh autocommit connection of the class's connect()."""

    def execute(self, sql, params=None, dbname="postgres"):
        """Run one statement (autocommit); return the affected row count."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.rowcount
        finally:
            conn.close()

    def query(self, sql, params=None, dbname="postgres"):
        """Run one query (autocommit); return all rows as a list of tuples."""
        conn = self.connect(dbname=dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            conn.close()


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


class Postgres(Statements):
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
# Patroni: etcd and a cluster of PostgreSQL nodes with failover
# ---------------------------------------------------------------------------

ETCD_BIN = os.environ.get("OUTBOX_ETCD_BIN", "/usr/bin/etcd")
PATRONI_BIN = os.environ.get("OUTBOX_PATRONI_BIN", "/usr/bin/patroni")
SLOT_SAFE_LINE = "Logical slot %s is safe to be used after a failover"

# Patroni runs under this small reaper. Patroni detaches the postmaster it starts (its parent
# exits at once), and where PID 1 reaps no orphans (as in some containers), a killed postmaster
# would stay a zombie that Patroni (psutil) takes for a running server. As a child subreaper this
# process adopts and reaps them, as init or systemd does on a host; it passes SIGTERM and SIGINT
# on to Patroni and exits with Patroni's status.
_REAPER = r"""
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(sys.argv[1:])
for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda signum, frame: os.kill(child.pid, signum))
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        sys.exit(0)
    if pid == child.pid:
        code = os.waitstatus_to_exitcode(status)
        sys.exit(code if code >= 0 else 128 - code)
"""


def _http(method, url, body=None, timeout=5):
    """One HTTP request on loopback (no proxy): (status, body as JSON or text), or (None, the
    error text) when nothing answered."""
    import json
    import urllib.error
    import urllib.request
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with opener.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except OSError as e:  # URLError, refused, timed out
        return None, str(e)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _free_ports(n, taken=()):
    """n distinct free TCP ports on 127.0.0.1, none of them in taken."""
    ports = []
    while len(ports) < n:
        p = free_port()
        if p not in ports and p not in taken:
            ports.append(p)
    return ports


def _server_has_setting(bin_dir, name, user):
    """True when this PostgreSQL build knows the setting (postgres --describe-config), e.g.
    output_plugin_libraries, which 15.19+ has and 15.18 does not."""
    kw = {}
    if user is not None:
        kw.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    proc = subprocess.run([os.path.join(bin_dir, "postgres"), "--describe-config"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, cwd="/", **kw)
    return any(line.split("\t", 1)[0] == name for line in proc.stdout.splitlines())


class Etcd:
    """A private single-member etcd 3.4 (Debian's etcd-server) on 127.0.0.1, in a temp dir.

    Serves the v3 API Patroni's `etcd3` DCS uses; client URL in .url, `host:port` in .hostport.
    Runs as the calling user (etcd does not mind root). Cleaned up like every harness server.
    """

    host = "127.0.0.1"

    def __init__(self, binary=ETCD_BIN, start_timeout=30):
        self.binary = binary
        self.start_timeout = start_timeout
        self.dir = None
        self.port = self.peer_port = None
        self.url = self.hostport = None
        self.log_path = None
        self.proc = None

    def __repr__(self):
        return "Etcd(url=%s, dir=%s)" % (self.url, self.dir)

    def start(self):
        """Start etcd (a fresh data dir the first time) and wait until /health says true."""
        if self.is_running():
            return self
        _register(self)
        if self.dir is None:
            self.dir = make_temp_dir("outbox-relay-etcd-")
            self.port, self.peer_port = _free_ports(2)
            self.hostport = "%s:%d" % (self.host, self.port)
            self.url = "http://" + self.hostport
            self.log_path = os.path.join(self.dir, "etcd.log")
        peer = "http://%s:%d" % (self.host, self.peer_port)
        cmd = [self.binary, "--name", "etcd0", "--data-dir", os.path.join(self.dir, "data"),
               "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
               "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
               "--initial-cluster", "etcd0=" + peer, "--initial-cluster-state", "new",
               "--initial-cluster-token", os.path.basename(self.dir), "--logger", "zap",
               "--log-outputs", "stderr"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._healthy, self.start_timeout, interval=0.1, what="etcd at " + self.url)
        except TimeoutError as e:
            self.kill()
            raise RuntimeError("%s\n%s" % (e, tail(self.log_path)))
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError("etcd exited with %s during start:\n%s" % (self.proc.returncode, tail(self.log_path)))
        status, body = _http("GET", self.url + "/health", timeout=2)
        return status == 200 and isinstance(body, dict) and body.get("health") == "true"

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL etcd; its data dir is kept."""
        if self.is_running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait()

    def cleanup(self):
        """Kill etcd and remove its temp dir."""
        self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        _unregister(self)


class PatroniNode(Statements):
    """One member of a PatroniCluster: a Patroni process and the PostgreSQL server it runs.

    Patroni runs as PostgreSQL's unprivileged user (as Postgres does: PostgreSQL refuses root) and
    starts, stops, promotes and demotes the server itself. The node's files are in .dir:
    patroni.yml (JSON, which YAML reads), patroni.log (Patroni's stderr), postgresql.log (the
    server's logging collector), custom.conf (Patroni's `custom_conf`: what Patroni 3.0 would
    otherwise drop, output_plugin_libraries) and data/. Its SQL helpers talk to this node only
    (the cluster's talk to the leader).
    """

    host = "127.0.0.1"

    def __init__(self, cluster, name, port, rest_port):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.rest_port = rest_port
        self.rest_url = "http://%s:%d" % (self.host, rest_port)
        self.dir = os.path.join(cluster.dir, name)
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "patroni.yml")
        self.log_path = os.path.join(self.dir, "patroni.log")
        self.pg_log_path = os.path.join(self.dir, "postgresql.log")
        self.proc = None
        self.log_mark = 0  # wait_slot reads Patroni's log from here (set when the node changes role)

    def __repr__(self):
        return "PatroniNode(%s, port=%d, rest=%d)" % (self.name, self.port, self.rest_port)

    # -- Patroni's configuration and process -------------------------------

    def write_config(self):
        """Write patroni.yml and custom.conf (the node dir is made and given to the user)."""
        import json
        c = self.cluster
        os.makedirs(self.dir, exist_ok=True)
        if c._user is not None:
            os.chown(self.dir, c._user.pw_uid, c._user.pw_gid)
        with open(os.path.join(self.dir, "custom.conf"), "w") as f:
            f.write("# outbox-relay test harness: Patroni's custom_conf of %s\n" % self.name)
            if c.output_plugin_libraries:
                # PostgreSQL 15.19+ only; Patroni 3.0 removes settings it does not know from
                # its parameters, so this one comes from here.
                f.write("output_plugin_libraries = '%s'\n" % c.output_plugin_libraries)
        local_parameters = {
            "unix_socket_directories": self.dir,
            "logging_collector": "on",
            "log_directory": self.dir,
            "log_filename": "postgresql.log",
            "log_file_mode": "0644",
            "log_line_prefix": "%m [%p] %q%u@%d ",
            "log_replication_commands": "on",
            "fsync": "off",
        }
        config = {
            "scope": c.scope,
            "namespace": "/outbox-relay-test/",
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": "%s:%d" % (self.host, self.rest_port),
                        "connect_address": "%s:%d" % (self.host, self.rest_port)},
            "etcd3": {"hosts": [c.etcd.hostport]},
            "watchdog": {"mode": "off"},
            "bootstrap": {"dcs": c.dcs_config(), "initdb": [{"encoding": "UTF8"}, "no-locale"]},
            "postgresql": {
                "listen": "%s:%d" % (self.host, self.port),
                "connect_address": "%s:%d" % (self.host, self.port),
                "data_dir": self.data_dir,
                "bin_dir": c.bin_dir,
                "pgpass": os.path.join(self.dir, "pgpass"),
                "custom_conf": os.path.join(self.dir, "custom.conf"),
                "authentication": {"superuser": {"username": "postgres"},
                                   "replication": {"username": "postgres"},
                                   "rewind": {"username": "postgres"}},
                "pg_hba": ["local all all trust", "local replication all trust",
                           "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"],
                "parameters": local_parameters,
            },
        }
        with open(self.config_path, "w") as f:
            json.dump(config, f, indent=1)

    def start(self):
        """Start Patroni on this node (it bootstraps, clones or starts the server by itself)."""
        if self.is_running():
            return self
        c = self.cluster
        if not os.path.exists(self.config_path):
            self.write_config()
        env = dict(os.environ, LC_ALL="C", LANG="C", PGTZ="UTC", PYTHONUNBUFFERED="1")
        kw = {}
        if c._user is not None:
            env.update(HOME=self.dir, USER=c._user.pw_name, LOGNAME=c._user.pw_name)
            kw.update(user=c._user.pw_uid, group=c._user.pw_gid, extra_groups=[])
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", _REAPER, c.patroni_bin, self.config_path],
                                         cwd=self.dir, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True, **kw)
        return self

    def is_running(self):
        """True while the Patroni process lives."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL Patroni and its reaper (not its server: Patroni starts it in a session of its
        own)."""
        if self.is_running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout=60):
        """Stop Patroni with SIGTERM: it stops its server (fast) and exits, leaving the leader
        key behind only if it could not; SIGKILL after timeout seconds. True when it exited by
        itself."""
        if not self.is_running():
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def log(self):
        """Patroni's log of this node so far."""
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def api(self, method, path, body=None, timeout=5):
        """A request to this node's Patroni REST API: (status, body), status None when down."""
        return _http(method, self.rest_url + path, body, timeout)

    def status(self):
        """GET /patroni (role, state, timeline, xlog, ...) as a dict; {} when Patroni does not answer."""
        status, body = self.api("GET", "/patroni", timeout=2)
        return body if status is not None and isinstance(body, dict) else {}

    def is_primary(self):
        """True when this node holds the leader lock and its server runs as a primary (GET /primary)."""
        return self.api("GET", "/primary", timeout=2)[0] == 200

    # -- the server ---------------------------------------------------------

    def postmaster_pid(self):
        """The postmaster's pid from data/postmaster.pid, or None when there is none."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def kill_postmaster(self):
        """SIGKILL the postmaster (a crash of the server, Patroni stays); returns its pid. Its
        backends and walsenders go down with it: they exit when they notice the postmaster died
        (at once for walsenders, which check it in their loop)."""
        pid = self.postmaster_pid()
        if pid is None:
            raise RuntimeError("no postmaster.pid on %s" % self.name)
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not _pid_alive(pid), 10, interval=0.05, what="postmaster %d gone" % pid)
        return pid

    def stop_postgres_immediately(self):
        """pg_ctl stop -m immediate if the server runs (for cleanup after Patroni is gone)."""
        if self.postmaster_pid() is None or not os.path.isdir(self.data_dir):
            return
        c = self.cluster
        kw = {}
        if c._user is not None:
            kw.update(user=c._user.pw_uid, group=c._user.pw_gid, extra_groups=[])
        proc = subprocess.run([os.path.join(c.bin_dir, "pg_ctl"), "stop", "-w", "-t", "30", "-m", "immediate",
                               "-D", self.data_dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              cwd="/", **kw)
        if proc.returncode != 0:
            pid = self.postmaster_pid()
            if pid is not None and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def dsn(self, dbname="postgres", user="postgres"):
        """libpq conninfo of this node only."""
        return "host=%s port=%d dbname=%s user=%s" % (self.host, self.port, dbname, user)

    def connect(self, autocommit=True, dbname="postgres", user="postgres"):
        import psycopg2
        conn = psycopg2.connect(self.dsn(dbname=dbname, user=user), connect_timeout=5)
        conn.autocommit = autocommit
        return conn

    def try_query(self, sql, params=None, dbname="postgres"):
        """query(), or None when the node does not answer (down, starting, restarting)."""
        try:
            return self.query(sql, params, dbname)
        except Exception:
            return None

    def slot(self, name):
        """This node's row of pg_replication_slots for the slot as a dict (None: no such slot or
        the node does not answer): slot_type, plugin, database, catalog_xmin, restart_lsn,
        confirmed_flush_lsn (text), active, wal_status."""
        rows = self.try_query("SELECT slot_type, plugin, database, catalog_xmin::text, restart_lsn::text, "
                              "confirmed_flush_lsn::text, active, wal_status FROM pg_replication_slots "
                              "WHERE slot_name = %s", (name,))
        if not rows:
            return None
        keys = ("slot_type", "plugin", "database", "catalog_xmin", "restart_lsn", "confirmed_flush_lsn",
                "active", "wal_status")
        return dict(zip(keys, rows[0]))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our child, not reaped yet) counts as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class PatroniCluster(Statements):
    """A throwaway PostgreSQL HA cluster as DB hosts run it: etcd, and Patroni with `nodes`
    PostgreSQL 15 servers on loopback ports, like the harness's Postgres and Kafka.

    What it sets up (PatroniNode.write_config, dcs_config):
    - one etcd (Etcd), Patroni's DCS through its `etcd3` (v3 API) client;
    - node0 bootstraps (initdb), the others clone it with pg_basebackup and stream from it,
      each through a physical slot of its name (`use_slots`, Patroni's default);
    - `wal_level = logical`, `track_commit_timestamp = on` (the relay's recovery), wal2json
      loadable (output_plugin_libraries on 15.19+, through custom_conf), trust on loopback;
    - `synchronous_mode` (default on): a commit returns once the synchronous standby flushed it,
      so a crash of the primary loses no transaction a writer saw committed, and Patroni fails
      over only to that standby;
    - `primary_start_timeout = 0`: when the primary's server dies, Patroni fails over at once
      instead of restarting it (crash_primary()), `use_pg_rewind` so that the old primary can
      rejoin as a replica;
    - ttl 20 s (the lowest that Patroni 3.2+ accepts), loop_wait 1 s, retry_timeout 5 s.

    add_permanent_slot() puts a logical slot into the dynamic configuration (`slots:`): Patroni
    creates it on the primary, copies it to each replica (pg_read_binary_file of the slot's
    state, then a restart of the replica) and, every loop, advances the copy to the primary's
    confirmed_flush_lsn as the primary reported it to the DCS (pg_replication_slot_advance); it
    forces `hot_standby_feedback` on, and logs "Logical slot X is safe to be used after a
    failover" on a replica once the primary keeps the catalog rows that copy needs.

    The cluster object also stands for "the primary" wherever a harness.Postgres would: dsn(),
    connect(), query(), execute() and create_database() use a multi-host conninfo with
    target_session_attrs=read-write, as the relay's and the applications' would, so a
    harness.Database on it follows failovers. Bounded waits: wait_leader(), wait_streaming(),
    wait_slot(), wait_failover_ready().
    """

    def __init__(self, nodes=2, bin_dir=PG_BIN, synchronous_mode=True, ttl=20, loop_wait=1, retry_timeout=5,
                 extra_dcs=None, patroni_bin=PATRONI_BIN, etcd_bin=ETCD_BIN):
        """extra_dcs: more of the dynamic configuration (merged over dcs_config() at bootstrap)."""
        self.n_nodes = nodes
        self.bin_dir = bin_dir
        self.synchronous_mode = synchronous_mode
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.extra_dcs = dict(extra_dcs or {})
        self.patroni_bin = patroni_bin
        self.etcd = Etcd(etcd_bin)
        self.scope = "outbox-relay-" + uuid.uuid4().hex[:8]
        self.dir = None
        self.nodes = []
        self._user = _unprivileged_user()
        self.output_plugin_libraries = None  # the value written, None when the server has no such GUC

    def __repr__(self):
        return "PatroniCluster(%s, nodes=%s)" % (self.scope, self.nodes)

    def dcs_config(self):
        """The dynamic configuration the cluster bootstraps with (Patroni stores it in etcd)."""
        config = {
            "ttl": self.ttl,
            "loop_wait": self.loop_wait,
            "retry_timeout": self.retry_timeout,
            "maximum_lag_on_failover": 64 * 1024 * 1024,
            "primary_start_timeout": 0,
            "synchronous_mode": self.synchronous_mode,
            "postgresql": {
                "use_pg_rewind": True,
                "use_slots": True,
                "parameters": {
                    "wal_level": "logical",
                    "track_commit_timestamp": "on",
                    "hot_standby_feedback": "on",
                    "max_replication_slots": 16,
                    "max_wal_senders": 16,
                    "max_connections": 100,
                    "timezone": "UTC",
                },
            },
        }
        config.update(self.extra_dcs)
        return config

    # -- life cycle ---------------------------------------------------------

    def start(self, timeout=120):
        """Start etcd, node0 (bootstrap) until it leads, then the replicas until each streams
        from it. Returns self."""
        _register(self)
        if self.dir is None:
            self.dir = make_temp_dir("outbox-relay-patroni-")
            if self._user is not None:
                os.chown(self.dir, self._user.pw_uid, self._user.pw_gid)
            if _server_has_setting(self.bin_dir, "output_plugin_libraries", self._user):
                self.output_plugin_libraries = OUTPUT_PLUGINS
            ports = _free_ports(2 * self.n_nodes)
            self.nodes = [PatroniNode(self, "node%d" % i, ports[2 * i], ports[2 * i + 1])
                          for i in range(self.n_nodes)]
        deadline = time.monotonic() + timeout
        try:
            self.etcd.start()
            _unregister(self.etcd)  # cleanup() removes it, after the Patronis that use it
            self.nodes[0].start()
            self.wait_leader(max(1, deadline - time.monotonic()))
            for node in self.nodes[1:]:
                node.start()
            for node in self.nodes[1:]:
                self.wait_streaming(node, max(1, deadline - time.monotonic()))
        except Exception as e:
            raise RuntimeError("%s\n%s" % (e, self.describe())) from e
        return self

    def cleanup(self):
        """Kill every Patroni (so none restarts or promotes anything), stop their servers
        immediately, kill etcd and remove the temp dirs."""
        for node in self.nodes:
            node.kill()
        for node in self.nodes:
            node.stop_postgres_immediately()
        self.etcd.cleanup()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        _unregister(self)

    def describe(self):
        """A few lines about each node (Patroni's view and its logs' tails), for failure messages."""
        out = []
        for node in self.nodes:
            out.append("--- %s (patroni %s): %s" % (node.name, "running" if node.is_running() else "down",
                                                   node.status()))
            out.append(tail(node.log_path, 15))
            out.append("--- %s postgresql.log:\n%s" % (node.name, tail(node.pg_log_path, 10)))
        return "\n".join(out)

    # -- who leads ----------------------------------------------------------

    def members(self):
        """GET /cluster from the first node that answers: [{name, role (leader, sync_standby,
        replica), state, host, port, timeline, lag}], [] when none answers."""
        for node in self.nodes:
            status, body = node.api("GET", "/cluster", timeout=2)
            if status == 200 and isinstance(body, dict):
                return body.get("members", [])
        return []

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def leader(self):
        """The node that holds the leader lock and runs as a primary now, or None."""
        leaders = [n for n in self.nodes if n.is_primary()]
        return leaders[0] if len(leaders) == 1 else None

    def replicas(self):
        """The nodes other than the current leader."""
        leader = self.leader()
        return [n for n in self.nodes if n is not leader]

    def wait_leader(self, timeout=60, other_than=None):
        """Wait until a node leads and accepts writes (if other_than is given: a node other than
        that one); return it."""
        def ready():
            node = self.leader()
            if node is None or node is other_than:
                return None
            rows = node.try_query("SELECT pg_is_in_recovery()")
            return node if rows and not rows[0][0] else None
        return wait_for(ready, timeout, interval=0.2,
                        what="a Patroni leader%s" % ("" if other_than is None else " other than " + other_than.name))

    def wait_streaming(self, node, timeout=60):
        """Wait until node streams from the leader (the leader's pg_stat_replication shows it,
        by its application_name, which Patroni sets to the member name)."""
        def streaming():
            leader = self.leader()
            if leader is None or leader is node:
                return False
            return leader.try_query("SELECT 1 FROM pg_stat_replication WHERE application_name = %s "
                                    "AND state = 'streaming'", (node.name,))
        wait_for(streaming, timeout, interval=0.2, what="%s streaming from the leader" % node.name)
        return node

    def wait_sync_standby(self, node, timeout=60):
        """Wait until Patroni lists node as the synchronous standby (synchronous_mode)."""
        wait_for(lambda: any(m["name"] == node.name and m["role"] == "sync_standby" for m in self.members()),
                 timeout, interval=0.2, what="%s as the synchronous standby" % node.name)
        return node

    # -- permanent slots ----------------------------------------------------

    def patch_config(self, patch):
        """PATCH the dynamic configuration (what `patronictl edit-config` does); returns it."""
        leader = self.leader() or self.wait_leader()
        status, body = leader.api("PATCH", "/config", patch, timeout=10)
        if status != 200:
            raise RuntimeError("PATCH /config %r failed: %s %s" % (patch, status, body))
        return body

    def add_permanent_slot(self, name, database, plugin="wal2json", timeout=90):
        """Put a permanent logical slot into the dynamic configuration (`slots: {name: {type:
        logical, database: ..., plugin: ...}}`; the database must exist) and wait until it exists
        on the leader and is ready for a failover on every replica (wait_slot)."""
        self.patch_config({"slots": {name: {"type": "logical", "database": database, "plugin": plugin}}})
        deadline = time.monotonic() + timeout
        leader = self.wait_leader(timeout)
        wait_for(lambda: leader.slot(name), max(1, deadline - time.monotonic()), interval=0.2,
                 what="slot %s on the leader %s" % (name, leader.name))
        for node in self.nodes:
            if node is not leader:
                self.wait_slot(node, name, max(1, deadline - time.monotonic()))

    def wait_slot(self, node, name, timeout=60):
        """Wait until a replica has its copy of the permanent logical slot and Patroni said it
        is safe to use after a failover, and the replica streams again (the copy restarted it).
        Patroni says so again after the node's server restarted (a former primary rejoining):
        only what it logged after node.log_mark counts, which crash_primary() and switchover()
        set for the former primary."""
        safe = SLOT_SAFE_LINE % name
        wait_for(lambda: node.slot(name) and safe in node.log()[node.log_mark:], timeout, interval=0.2,
                 what="slot %s copied to %s and safe for a failover" % (name, node.name))
        self.wait_streaming(node, timeout)
        return node.slot(name)

    def wait_failover_ready(self, slots=(), timeout=60):
        """Wait until a failover keeps everything: every replica streams (and, in
        synchronous_mode, one is the synchronous standby) and holds the named permanent slots
        ready for a failover."""
        deadline = time.monotonic() + timeout
        leader = self.wait_leader(timeout)
        for node in self.nodes:
            if node is leader or not node.is_running():
                continue
            for name in slots:
                self.wait_slot(node, name, max(1, deadline - time.monotonic()))
            self.wait_streaming(node, max(1, deadline - time.monotonic()))
        if self.synchronous_mode:
            wait_for(lambda: any(m["role"] == "sync_standby" for m in self.members()),
                     max(1, deadline - time.monotonic()), interval=0.2, what="a synchronous standby")
        return leader

    # -- failures and switchovers -------------------------------------------

    def crash_primary(self, timeout=90):
        """kill -9 the leader's postmaster (Patroni stays): with primary_start_timeout = 0 its
        Patroni fails over instead of restarting it. Returns (old leader, new leader) once the
        new one accepts writes."""
        old = self.wait_leader()
        old.log_mark = len(old.log())
        old.kill_postmaster()
        new = self.wait_leader(timeout, other_than=old)
        return old, new

    def switchover(self, candidate=None, timeout=90):
        """A clean switchover through the REST API (what `patronictl switchover` does) to
        candidate (default: the synchronous standby, or any replica); returns (old, new) once
        the new leader accepts writes."""
        old = self.wait_leader()
        if candidate is None:
            names = [m["name"] for m in self.members() if m["role"] == "sync_standby"]
            candidate = self.node(names[0]) if names else next(n for n in self.nodes if n is not old)
        old.log_mark = len(old.log())
        status, body = old.api("POST", "/switchover", {"leader": old.name, "candidate": candidate.name},
                               timeout=timeout)
        if status != 200:
            raise RuntimeError("switchover to %s refused: %s %s" % (candidate.name, status, body))
        new = self.wait_leader(timeout, other_than=old)
        return old, new

    # -- clients (the primary, whichever node that is) ------------------------

    def dsn(self, dbname="postgres", user="postgres", target_session_attrs="read-write"):
        """A multi-host libpq conninfo naming every node, which connects to the primary."""
        return "host=%s port=%s dbname=%s user=%s target_session_attrs=%s connect_timeout=5" % (
            ",".join(n.host for n in self.nodes), ",".join(str(n.port) for n in self.nodes),
            dbname, user, target_session_attrs)

    def connect(self, autocommit=True, dbname="postgres", user="postgres"):
        """A psycopg2 connection to the current primary."""
        import psycopg2
        conn = psycopg2.connect(self.dsn(dbname=dbname, user=user))
        conn.autocommit = autocommit
        return conn

    def create_database(self, name=None):
        """CREATE DATABASE on the primary; returns a harness.Database that follows the primary."""
        name = name or "test_" + uuid.uuid4().hex[:12]
        self.execute('CREATE DATABASE "%s"' % name)
        return Database(self, name)


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

# The same for Kafka 4.x, which logs through log4j2 (-Dlog4j2.configurationFile).
LOG4J2_PROPERTIES = """\
appender.file.type=File
appender.file.name=file
appender.file.fileName={log}
appender.file.append=true
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
logger.request.name=kafka.request.logger
logger.request.level=WARN
logger.state.name=state.change.logger
logger.state.level=WARN
logger.cleaner.name=kafka.log.LogCleaner
logger.cleaner.level=WARN
logger.raft.name=org.apache.kafka.raft
logger.raft.level=WARN
logger.storage.name=org.apache.kafka.storage
logger.storage.level=WARN
logger.log.name=kafka.log
logger.log.level=WARN
logger.appinfo.name=org.apache.kafka.common.utils.AppInfoParser
logger.appinfo.level=WARN
logger.metrics.name=org.apache.kafka.common.metrics
logger.metrics.level=WARN
"""


def _quiet_kafka_client_config():
    """librdkafka settings that keep expected connection errors out of the test output."""
    return {"log_level": 0, "error_cb": lambda err: None}


class Kafka:
    """A private single-node Kafka broker+controller (KRaft) listening on 127.0.0.1."""

    def __init__(self, repo_root=REPO_ROOT, start_timeout=90, ssl_properties=None, sasl_users=None,
                 version=None):
        """version: the broker version (default kafka_version(): env KAFKA_VERSION, else 3.9.1).
        ssl_properties: when given, the broker also gets an SSL listener on a free port
        (self.ssl_port, advertised as localhost; self.ssl_bootstrap) with these ssl.* properties
        added to server.properties; the PLAINTEXT listener stays for the harness's clients.
        sasl_users: {user: password}; when given, the broker also gets a SASL_PLAINTEXT listener
        (mechanism PLAIN; self.sasl_port, self.sasl_bootstrap) and the StandardAuthorizer: SASL
        users may do only what ACLs allow (self.add_acls), while the PLAINTEXT and CONTROLLER
        listeners' principal (User:ANONYMOUS, the harness's own clients) is a super user."""
        self.repo_root = repo_root
        self.start_timeout = start_timeout
        self.version = version or kafka_version()
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
        return "Kafka(%s, bootstrap=%s, dir=%s)" % (self.version, self.bootstrap, self.dir)

    def _java(self, main, *args):
        """Return the java command line running a Kafka main class."""
        if kafka_major(self.version) >= 4:
            logging = "-Dlog4j2.configurationFile=" + os.path.join(self.dir, "log4j2.properties")
        else:
            logging = "-Dlog4j.configuration=file:" + os.path.join(self.dir, "log4j.properties")
        return ["java", "-Xmx512m", "-Djava.awt.headless=true", logging,
                "-cp", os.path.join(self._libs, "*"), main] + list(args)

    def _init(self):
        """Create the temp dir, write server.properties and log4j.properties, format the storage."""
        self._libs = ensure_kafka_jars(self.repo_root, self.version)
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
            # A killed relay's open transaction on the shared checkpoint topic holds other relays'
            # starts until the broker aborts it (docs/exactly-once.md): its check every second,
            # not every 10 s, so that is transaction.timeout.ms and little more.
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
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
        with open(os.path.join(self.dir, "log4j2.properties"), "w") as f:
            f.write(LOG4J2_PROPERTIES.format(log=self.log_path))
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
        """Runs Kafka's ACL tool (as bin/kafka-acls.sh: kafka.admin.AclCommand in 3.x,
        org.apache.kafka.tools.AclCommand in 4.x) against the
        PLAINTEXT listener (a super user), e.g. acl("--add", "--allow-principal", "User:relay",
        "--operation", "All", "--topic", "*"); raises with its output when it fails. (Debian's
        confluent-kafka has no ACL admin API.) The StandardAuthorizer applies it at once."""
        tool = "org.apache.kafka.tools.AclCommand" if kafka_major(self.version) >= 4 else "kafka.admin.AclCommand"
        proc = subprocess.run(self._java(tool, "--bootstrap-server", self.bootstrap,
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


class SchemaRegistry:
    """A private Apicurio Registry (in-memory storage) serving Confluent's REST API on 127.0.0.1.

    self.url is the API's base (http://127.0.0.1:PORT/apis/ccompat/v7), what the relay's
    schema_registry.url and confluent-kafka's SchemaRegistryClient take. Data is in memory: a
    restart starts empty. The global compatibility level is set (BACKWARD by default, Confluent's
    default; Apicurio's own is NONE) each time it starts.
    """

    def __init__(self, repo_root=REPO_ROOT, start_timeout=120, compatibility="BACKWARD"):
        self.repo_root = repo_root
        self.start_timeout = start_timeout
        self.compatibility = compatibility
        self.dir = None
        self.port = None
        self.url = None
        self.stdout_path = None
        self.proc = None
        self._jar = None

    def __repr__(self):
        return "SchemaRegistry(url=%s, dir=%s)" % (self.url, self.dir)

    def start(self):
        """Start it (building it first when .cache has no build), wait until it answers, set the
        compatibility level."""
        if self.is_running():
            return self
        _register(self)
        if self.dir is None:
            self._jar = ensure_registry_build(self.repo_root)
            self.dir = make_temp_dir("outbox-relay-registry-")
            self.port = free_port()
            self.url = "http://127.0.0.1:%d/apis/ccompat/v7" % self.port
            self.stdout_path = os.path.join(self.dir, "stdout.log")
        cmd = ["java", "-Xmx192m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
               "-Dquarkus.http.host=127.0.0.1", "-Dquarkus.http.port=%d" % self.port,
               "-jar", self._jar]
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(self._ready, self.start_timeout, interval=0.2, what="schema registry at " + self.url)
        except TimeoutError as e:
            self.kill()
            raise RuntimeError("%s\n--- %s:\n%s" % (e, self.stdout_path, tail(self.stdout_path)))
        status, body = _http("PUT", self.url + "/config", {"compatibility": self.compatibility})
        if status != 200:
            raise RuntimeError("schema registry: setting compatibility failed: %s %s" % (status, body))
        return self

    def _ready(self):
        """True once GET /subjects answers; raise if the JVM died."""
        if self.proc.poll() is not None:
            raise RuntimeError("the schema registry exited with %s during start:\n%s" % (
                self.proc.returncode, tail(self.stdout_path)))
        status, _ = _http("GET", self.url + "/subjects", timeout=2)
        return status == 200

    def request(self, method, path, body=None, timeout=5):
        """One REST call (path after the API's base): (status, JSON body or text)."""
        return _http(method, self.url + path, body, timeout=timeout)

    def is_running(self):
        """True while the registry process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def ensure_running(self):
        """Start it again if a test left it stopped (empty: its data was in memory); resume a
        paused one."""
        if self.dir is None:
            return
        if self.is_running():
            self.resume()
        else:
            self.start()

    def pause(self):
        """Freeze it (SIGSTOP): connections are accepted by the kernel, nothing is answered."""
        self._signal(signal.SIGSTOP)

    def resume(self):
        """Let a paused registry go on (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig):
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, AttributeError):
            pass

    def stop(self, timeout=30):
        """SIGTERM (about 1.3 s), SIGKILL after timeout seconds."""
        if not self.is_running():
            return
        self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        """SIGKILL the registry."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        self.proc.wait()

    def cleanup(self):
        """Kill it and remove its temp dir."""
        self.kill()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        _unregister(self)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _cmd_up(args):
    """Start the servers, print how to reach them, wait for stdin EOF or a signal, clean up."""
    try:
        if args.patroni:
            t0 = time.monotonic()
            cluster = PatroniCluster()
            cluster.start()
            print("PG_DSN=%s" % cluster.dsn(), flush=True)
            print("ETCD=%s" % cluster.etcd.url, flush=True)
            for node in cluster.nodes:
                print("PATRONI_%s=%s %s:%d %s" % (node.name.upper(), node.rest_url, node.host, node.port, node.dir),
                      flush=True)
            print("harness: Patroni cluster up in %.1f s" % (time.monotonic() - t0), file=sys.stderr, flush=True)
        elif not args.no_pg:
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
    for version in args.kafka_version or [kafka_version()]:
        print(ensure_kafka_jars(REPO_ROOT, version))
    if args.registry:
        print(ensure_registry_build(REPO_ROOT))
    return 0


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start PostgreSQL and Kafka until stdin closes or SIGTERM/SIGINT")
    up.add_argument("--no-pg", action="store_true", help="do not start PostgreSQL")
    up.add_argument("--no-kafka", action="store_true", help="do not start Kafka")
    up.add_argument("--patroni", action="store_true",
                    help="a Patroni cluster (etcd, two PostgreSQL nodes) instead of one PostgreSQL")
    up.add_argument("--wait", choices=("stdin", "signal"), default="stdin",
                    help="stop when stdin closes (default) or only on SIGTERM/SIGINT")
    up.set_defaults(func=_cmd_up)
    jars = sub.add_parser("jars", help="fetch the Kafka jars if needed and print their directory")
    jars.add_argument("--kafka-version", action="append", metavar="VERSION",
                      help="a broker version to fetch (repeatable; default: env KAFKA_VERSION, else %s)"
                      % DEFAULT_KAFKA_VERSION)
    jars.add_argument("--registry", action="store_true",
                      help="also build the schema registry (Apicurio) into .cache/registry/app")
    jars.set_defaults(func=_cmd_jars)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
