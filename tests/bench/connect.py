# connect.py: a throwaway Kafka Connect worker (distributed mode) running Debezium, for `make bench-debezium`.
"""Kafka Connect with debezium-connector-postgres, its jars fetched from Maven Central.

The jars of tests/bench/debezium/pom.xml (connect-runtime of the harness broker's Kafka version,
Debezium's PostgreSQL connector and the Outbox Event Router) go into .cache/debezium/libs, fetched
once with `mvn dependency:copy-dependencies`; a marker holding the pom's hash says they are
complete. The worker runs in distributed mode (KIP-618's exactly-once source support exists only
there) on the harness's broker, with its REST API on a free port of 127.0.0.1.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402

POM = os.path.join(HERE, "debezium", "pom.xml")

# The JVM options of Kafka's bin/connect-distributed.sh and kafka-run-class.sh.
JVM_OPTS = ["-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true"]

LOG4J = """\
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File={log}
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.org.reflections=ERROR
log4j.logger.org.apache.kafka.clients=WARN
log4j.logger.org.apache.kafka.connect.runtime.rest.RestServer=WARN
"""


def _pom_hash():
    with open(POM, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _complete(libs, marker, want):
    """True when libs holds a complete fetch of the pom whose hash is want."""
    try:
        with open(marker) as f:
            have = f.read().strip()
    except OSError:
        return False
    return have == want and any(n.startswith("debezium-connector-postgres-") for n in os.listdir(libs))


def ensure_jars(repo_root=harness.REPO_ROOT):
    """Fetch the jars of tests/bench/debezium/pom.xml into .cache/debezium/libs once; return that dir.

    Only this directory (new in the shared .cache) is written; a staging dir is renamed into place."""
    cache = os.path.join(repo_root, ".cache", "debezium")
    libs, marker = os.path.join(cache, "libs"), os.path.join(cache, "libs.ok")
    want = _pom_hash()
    if _complete(libs, marker, want):
        return libs
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be fetching right now
        if _complete(libs, marker, want):
            return libs
        staging = libs + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = ["mvn", "-q", "-B", "-ntp", "-f", POM, "dependency:copy-dependencies",
               "-DoutputDirectory=" + staging, "-DincludeScope=runtime"]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise RuntimeError("fetching the Debezium jars failed (%s):\n%s" % (" ".join(cmd), proc.stdout[-4000:]))
        shutil.rmtree(libs, ignore_errors=True)
        os.rename(staging, libs)
        with open(marker, "w") as f:
            f.write(want + "\n")
    return libs


def worker_properties(bootstrap, port, group, exactly_once):
    """The distributed worker's settings: Connect's defaults but for what a one-broker test needs.

    Keys and values are plain strings (StringConverter): the outbox key column's text and the
    payload's JSON text, as the relay writes them. Internal topics have replication factor 1."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "config.storage.topic": group + ".configs",
        "offset.storage.topic": group + ".offsets",
        "status.storage.topic": group + ".status",
        "config.storage.replication.factor": "1",
        "offset.storage.replication.factor": "1",
        "status.storage.replication.factor": "1",
        "offset.storage.partitions": "1",
        "status.storage.partitions": "1",
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.storage.StringConverter",
        "listeners": "http://127.0.0.1:%d" % port,
        "rest.advertised.host.name": "127.0.0.1",
        # at-least-once: how often source offsets (and so the slot position) are committed
        "offset.flush.interval.ms": "1000",
        "exactly.once.source.support": "enabled" if exactly_once else "disabled",
    }


class ConnectWorker:
    """One Kafka Connect distributed worker process; cleanup() stops it and removes its dir."""

    def __init__(self, bootstrap, exactly_once, log_dir, repo_root=harness.REPO_ROOT):
        """log_dir: where the worker's log and stdout go (kept after cleanup)."""
        self.libs = ensure_jars(repo_root)
        self.dir = harness.make_temp_dir("outbox-relay-connect-")
        os.makedirs(log_dir, exist_ok=True)
        self.port = harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.group = "bench-connect-" + os.path.basename(self.dir).rsplit("-", 1)[-1]
        self.props = worker_properties(bootstrap, self.port, self.group, exactly_once)
        self.log_path = os.path.join(log_dir, "connect.log")
        self.stdout_path = os.path.join(log_dir, "connect.stdout.log")
        self.proc = None

    def __repr__(self):
        return "ConnectWorker(%s, dir=%s)" % (self.url, self.dir)

    def _write_files(self):
        path = os.path.join(self.dir, "worker.properties")
        with open(path, "w") as f:
            f.writelines("%s=%s\n" % kv for kv in self.props.items())
        with open(os.path.join(self.dir, "log4j.properties"), "w") as f:
            f.write(LOG4J.format(log=self.log_path))
        return path

    def start(self, timeout=180):
        """Start the JVM and wait until its REST API answers and the worker joined its group."""
        harness._register(self)
        props = self._write_files()
        cmd = (["java"] + JVM_OPTS + ["-Dlog4j.configuration=file:" + os.path.join(self.dir, "log4j.properties"),
                                      "-cp", os.path.join(self.libs, "*"),
                                      "org.apache.kafka.connect.cli.ConnectDistributed", props])
        with open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        harness.wait_for(self._ready, timeout, interval=0.5, what="Kafka Connect at " + self.url)
        return self

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("Kafka Connect exited with %s:\n%s\n%s" % (
                self.proc.returncode, harness.tail(self.stdout_path), harness.tail(self.log_path)))
        try:
            return isinstance(self.rest("GET", "/connectors"), list)
        except (OSError, RuntimeError):
            return False

    def rest(self, method, path, body=None, timeout=30):
        """One REST call; returns the parsed JSON answer (None when empty); raises with the answer on 4xx/5xx."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise RuntimeError("Connect %s %s: %s %s" % (method, path, e.code, e.read().decode()[:2000]))
        return json.loads(text) if text.strip() else None

    def create_connector(self, name, config):
        return self.rest("POST", "/connectors", {"name": name, "config": config})

    def task_state(self, name):
        """(connector state, first task's state, its trace) or None while there is no status yet."""
        try:
            st = self.rest("GET", "/connectors/%s/status" % name)
        except RuntimeError:
            return None
        tasks = st.get("tasks") or [{}]
        return st["connector"]["state"], tasks[0].get("state"), tasks[0].get("trace")

    def delete_connector(self, name):
        try:
            self.rest("DELETE", "/connectors/%s" % name)
        except RuntimeError:
            pass

    def stop(self, timeout=60):
        """SIGTERM (a clean shutdown), SIGKILL after timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self):
        self.stop()
        harness._unregister(self)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
