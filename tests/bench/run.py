#!/usr/bin/env python3
# run.py: `make bench`: catch-up against pg_recvlogical, live latency, footprint and a Kafka outage,
# on a throwaway PostgreSQL 15 (wal2json) and Kafka; results in build/bench/results.{json,md}.
"""outbox-relay benchmark (see docs/performance.md).

`run.py --render build/bench/results.json` prints a saved run's tables and targets again
(BENCH_UPDATE_DOCS=1 copies them into docs/performance.md).

Environment knobs (defaults in brackets):
  BENCH_ROWS [1000000]          catch-up backlog, outbox rows per shape
  BENCH_RUNS [3]                runs of each catch-up and live measurement (median, min-max)
  BENCH_LIVE_SECONDS [20]       writing time of each live-latency run
  BENCH_OUTAGE_SECONDS [60]     how long the broker is down in the outage test
  BENCH_RATES [1000,5000,max]   live rates in rows/s; "max" = unpaced writers
  BENCH_PHASES [catchup,live,outage]
  BENCH_MODES [exactly-once,at-least-once]
  BENCH_SHAPES [large,small]    large: 10 transactions; small: transactions of 10 rows
  BENCH_FORMATS [json,avro,protected]  catch-up variants: avro = the outbox source in format
                                "avro" (schema file in a temp schema_dir, a real schema registry);
                                protected = JSON with field protection (BENCH_PROTECT rules)
  BENCH_PROTECT [two hashes and a mask]  the protect list of the "protected" variant (libconfig;
                                both keys are given as credentials, so "encrypt" works too)
  BENCH_WAIT_QUIET [0]          before each measurement, wait up to this many seconds while other
                                processes use more than 0.1 core (each measurement records theirs)
  BENCH_LIVE_WARMUP [5 or 60]   seconds of unreported live load first (60 when no catch-up ran
                                before: the broker's JIT needs it)
  BENCH_FETCH_WAIT_MS [100]     fetch.wait.max.ms of the latency consumer
  BENCH_MAX_WRITERS [4]         writer processes for the "max" rate
  BENCH_OUTAGE_RATE [1000]      rows/s written during the outage test
  BENCH_OUTAGE_RUNS [1]         outage runs per delivery mode
  BENCH_VERIFY [1]              count the records in Kafka after each run (read_committed)
  BENCH_PERF [0]                1: profile one extra catch-up run with `perf record -a`
  BENCH_UPDATE_DOCS [0]         1: copy the result tables into docs/performance.md
  BENCH_OUT [build/bench]       output directory
  BENCH_RELAY_CONF, BENCH_KAFKA_CONF  libconfig text added to the relay's relay and kafka groups
                                (experiments, e.g. BENCH_KAFKA_CONF='linger_ms = 1;')
  RELAY_BIN [relay/outbox-relay]
  BENCH_RELAY_COMMIT            label for a RELAY_BIN built elsewhere (default: git describe here)
"""

import datetime
import json
import math
import multiprocessing
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import relayctl  # noqa: E402

REPO = harness.REPO_ROOT
PG_RECVLOGICAL = os.path.join(harness.PG_BIN, "pg_recvlogical")
CHECKPOINT_TOPIC = "bench.checkpoints"
AGGREGATES = ("user", "document", "liveness")
WAL2JSON_OPTIONS = ("format-version=2", "include-transaction=1", "include-xids=1",
                    "include-timestamp=1", "include-lsn=1", "add-tables=outbox.events")
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIVE_WARMUP_S = 2.0      # live: rows committed in the first seconds are not counted
OUTAGE_BASELINE_S = 10.0  # outage: writing before the broker is stopped
DOCS_BEGIN = "<!-- bench-results:begin -->"
DOCS_END = "<!-- bench-results:end -->"

# Payload of about 300 bytes (as jsonb text), like an identity-verification event.
PAYLOAD_SQL = ("jsonb_build_object('seq', g, 'user_id', 'u-' || (g % 10000), 'document', 'passport', "
               "'country', 'NL', 'status', 'id_verified', 'score', 0.987, "
               "'reviewer', 'auto', 'note', repeat('p', 150))")


# The Avro schema of the backlog's event type (event_type 'Changed'), fields in the order
# PAYLOAD_SQL builds them, as a schema's author would write them: jsonb hands the payload over
# with its keys in its own order (shorter keys first), which the relay has to follow.
AVRO_EVENT_TYPE = "Changed"
AVRO_SCHEMA = {
    "type": "record", "name": "Changed", "namespace": "bench.events",
    "fields": [{"name": "seq", "type": "long"}, {"name": "user_id", "type": "string"},
               {"name": "document", "type": "string"}, {"name": "country", "type": "string"},
               {"name": "status", "type": "string"}, {"name": "score", "type": "double"},
               {"name": "reviewer", "type": "string"}, {"name": "note", "type": "string"}],
}


def variant_label(mode, fmt):
    """How a relay run is named in results: the mode, with ", avro" or ", protected" for a variant."""
    return mode if fmt == "json" else "%s, %s" % (mode, fmt)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------

def _env(name, default):
    v = os.environ.get(name, "").strip()
    return v if v else default


def _env_int(name, default):
    v = _env(name, "")
    return int(float(v.replace("_", ""))) if v else default


def _env_list(name, default):
    return [x.strip() for x in _env(name, default).split(",") if x.strip()]


class Settings:
    def __init__(self):
        self.rows = _env_int("BENCH_ROWS", 1_000_000)
        self.runs = max(1, _env_int("BENCH_RUNS", 3))
        self.live_seconds = _env_int("BENCH_LIVE_SECONDS", 20)
        self.outage_seconds = _env_int("BENCH_OUTAGE_SECONDS", 60)
        self.rates = _env_list("BENCH_RATES", "1000,5000,max")
        self.phases = _env_list("BENCH_PHASES", "catchup,live,outage")
        self.modes = _env_list("BENCH_MODES", "exactly-once,at-least-once")
        self.shapes = _env_list("BENCH_SHAPES", "large,small")
        self.formats = _env_list("BENCH_FORMATS", "json,avro,protected")
        self.max_writers = max(1, _env_int("BENCH_MAX_WRITERS", 4))
        self.outage_rate = _env_int("BENCH_OUTAGE_RATE", 1000)
        self.outage_runs = max(1, _env_int("BENCH_OUTAGE_RUNS", 1))
        self.verify = _env_int("BENCH_VERIFY", 1) != 0
        self.perf = _env_int("BENCH_PERF", 0) != 0
        self.update_docs = _env_int("BENCH_UPDATE_DOCS", 0) != 0
        self.fetch_wait_ms = _env_int("BENCH_FETCH_WAIT_MS", 100)
        self.wait_quiet = _env_int("BENCH_WAIT_QUIET", 0)
        self.live_warmup = _env_int("BENCH_LIVE_WARMUP", -1)
        self.relay_conf = _env("BENCH_RELAY_CONF", "")
        self.kafka_conf = _env("BENCH_KAFKA_CONF", "")
        self.out_dir = os.path.abspath(_env("BENCH_OUT", os.path.join(REPO, "build", "bench")))
        self.relay_bin = os.path.abspath(_env("RELAY_BIN", os.path.join(REPO, "relay", "outbox-relay")))
        if self.rows < 100 or self.rows % 10:
            raise SystemExit("BENCH_ROWS must be a multiple of 10, at least 100")
        for m in self.modes:
            if m not in ("exactly-once", "at-least-once"):
                raise SystemExit("BENCH_MODES: unknown mode %r" % m)
        for sh in self.shapes:
            if sh not in ("large", "small"):
                raise SystemExit("BENCH_SHAPES: unknown shape %r" % sh)
        for fm in self.formats:
            if fm not in ("json", "avro", "protected"):
                raise SystemExit("BENCH_FORMATS: unknown format %r" % fm)

    def variants(self, modes=None):
        """(mode, format) of every relay run of a catch-up: JSON and Avro side by side."""
        return [(m, f) for m in (modes or self.modes) for f in self.formats]

    def as_dict(self):
        d = dict(self.__dict__)
        d["relay_bin"] = os.path.relpath(self.relay_bin, REPO) if self.relay_bin.startswith(REPO) else self.relay_bin
        d.pop("out_dir")
        return d


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def log(msg):
    print("bench %s %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(n):
    return "%X/%X" % (n >> 32, n & 0xFFFFFFFF)


def proc_cpu(pid):
    """utime+stime of a process (all its threads), in seconds; None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid):
    """Per thread of a process: {tid: (name, CPU seconds, voluntary context switches)}."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                head, tail = f.read().rsplit(")", 1)
            fields = tail.split()
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                vcs = [int(ln.split()[1]) for ln in f if ln.startswith("voluntary_ctxt_switches")][0]
        except (OSError, IndexError, ValueError):
            continue
        out[tid] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / CLK_TCK, vcs)
    return out


def thread_delta(before, after, seconds):
    """Per thread name (broker threads together): share of a core and wake-ups per second."""
    agg = {}
    for tid, (name, cpu, vcs) in after.items():
        c0, v0 = before.get(tid, (name, 0.0, 0))[1:]
        key = "rdk:broker*" if name.startswith("rdk:broker") else name
        a = agg.setdefault(key, [0.0, 0])
        a[0] += cpu - c0
        a[1] += vcs - v0
    return {k: {"cpu_share": v[0] / seconds, "wakeups_per_s": v[1] / seconds} for k, v in agg.items()}


def proc_mem(pid):
    """(VmRSS, VmHWM) of a process in kB; (None, None) when it is gone."""
    rss = hwm = None
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def machine_busy():
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return total - idle, total


def all_procs():
    """{pid: (ppid, CPU seconds)} of every process on the machine, its reaped children included.

    A child's time moves into its parent's cutime/cstime when the parent reaps it, so sums over
    a process tree survive processes ending in between."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(d)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / CLK_TCK)
    return out


class CpuWindow:
    """Where the machine's CPU went between start() and stop(), in cores (CPU seconds per second).

    relay, walsender (the relay's or pg_recvlogical's), postgres (the rest of the server),
    broker, registry (the schema registry, when the Avro runs started it), bench (this script and
    its children: writers, consumer, pg_recvlogical) and foreign: everything else on the machine,
    which should be about 0 for figures worth keeping.
    """

    def __init__(self, pg, kafka_pid, relay_pid=None, registry_pid=None):
        self.pg = pg
        self.kafka_pid = kafka_pid
        self.relay_pid = relay_pid
        self.registry_pid = registry_pid
        self.walsender_pid = None

    def _postmaster(self):
        try:
            with open(os.path.join(self.pg.data_dir, "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None

    def start(self):
        self.t0 = time.monotonic()
        self.m0 = machine_busy()
        self.p0 = all_procs()
        return self

    def stop(self, extra=None):
        dt = time.monotonic() - self.t0
        m1 = machine_busy()
        p1 = all_procs()
        roots = {self.relay_pid: "relay", self.walsender_pid: "walsender", self._postmaster(): "postgres",
                 self.kafka_pid() if callable(self.kafka_pid) else self.kafka_pid: "broker", os.getpid(): "bench",
                 self.registry_pid: "registry"}
        roots.pop(None, None)

        def kind(pid, procs):
            seen = 0
            while pid and seen < 64:
                if pid in roots:
                    return roots[pid]
                pid = (procs.get(pid) or (0, 0))[0]
                seen += 1
            return "foreign"
        use = dict.fromkeys(("relay", "walsender", "postgres", "broker", "registry", "bench", "foreign"), 0.0)
        for pid, (_, cpu) in p1.items():
            use[kind(pid, p1)] += cpu
        for pid, (_, cpu) in self.p0.items():
            use[kind(pid, self.p0)] -= cpu
        ncpu = os.cpu_count() or 1
        busy = (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1])
        out = {"seconds": dt, "machine_busy_pct": 100.0 * busy}
        for k, v in use.items():
            out[k + "_cores"] = v / dt if dt > 0 else None
        for k, v in (extra or {}).items():
            out[k] = v
        out["unaccounted_cores"] = busy * ncpu - sum(use.values()) / dt if dt > 0 else None
        return out


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


def summary(values):
    """median, min, max and relative spread ((max-min)/median) of a list of numbers."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    med = statistics.median(vals)
    return {"median": med, "min": min(vals), "max": max(vals), "n": len(vals),
            "spread": (max(vals) - min(vals)) / med if med else 0.0}


def mb(kb):
    return None if kb is None else kb / 1024.0


class PgMonitor:
    """A persistent connection for polling slots and WAL positions."""

    def __init__(self, db):
        self.conn = db.connect(autocommit=True)
        self.cur = self.conn.cursor()

    def slot(self, slot):
        """(confirmed_flush_lsn as int or 0, walsender pid or None)."""
        self.cur.execute("SELECT confirmed_flush_lsn - '0/0', active_pid FROM pg_replication_slots "
                         "WHERE slot_name = %s", (slot,))
        row = self.cur.fetchone()
        if row is None:
            return 0, None
        return (int(row[0]) if row[0] is not None else 0), row[1]

    def lags(self, walsender_pid):
        """(WAL not yet decoded and sent by the walsender, sent but not confirmed by the relay), bytes."""
        self.cur.execute("SELECT pg_current_wal_insert_lsn() - sent_lsn, sent_lsn - flush_lsn "
                         "FROM pg_stat_replication WHERE pid = %s", (walsender_pid,))
        row = self.cur.fetchone()
        return (int(row[0]), int(row[1])) if row and row[0] is not None and row[1] is not None else (0, 0)

    def wal_lsn(self):
        self.cur.execute("SELECT pg_current_wal_insert_lsn() - '0/0'")
        return int(self.cur.fetchone()[0])

    def close(self):
        self.conn.close()


# ---------------------------------------------------------------------------
# Relay configuration and processes
# ---------------------------------------------------------------------------

# The "protected" variant's rules: a few fields of the backlog's payload, as an identity service
# would protect them (keyed hashes stay joinable; the document type keeps its last characters).
PROTECT_RULES = ('protect = ( { fields = ["/user_id", "/reviewer"]; action = "hash"; },\n'
                 '  { fields = ["/document"]; action = "mask"; keep_last = 2; } );')


def protect_credentials(workdir):
    """A systemd-like credentials directory with both protection keys: the relay's environment."""
    d = os.path.join(workdir, "credentials")
    os.makedirs(d, exist_ok=True)
    for name in ("protect-hash-key", "protect-encrypt-key"):
        with open(os.path.join(d, name), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    return {"CREDENTIALS_DIRECTORY": d}


def write_relay_config(path, dsn, bootstrap, slot, topic, mode, create_slot, timestamp=None, avro=None,
                       protect=False):
    """Defaults everywhere but the slot, the topic template, the delivery mode (and timestamp).

    avro: (registry URL, schema_dir) for an outbox source in format "avro"; protect: with the
    protect rules of BENCH_PROTECT."""
    src = 'table = "outbox.events"; topic = "%s";' % topic
    if timestamp:
        src += ' timestamp = "%s";' % timestamp
    if avro:
        src += ' format = "avro";'
    with open(path, "w") as f:
        f.write('postgresql = { conninfo = "%s"; slot = "%s"; create_slot = %s; };\n'
                % (dsn, slot, "true" if create_slot else "false"))
        f.write("sources = ( { %s } );\n" % src)
        # A relay that creates its slot measures the rows written from then on: the outbox rows
        # of earlier runs are not backfilled (relay.first_start).
        first = ' first_start = "from-now";' if create_slot else ""
        f.write('relay = { delivery = "%s"; checkpoint_topic = "%s";%s %s };\n'
                % (mode, CHECKPOINT_TOPIC, first, _env("BENCH_RELAY_CONF", 'log_level = "info";')))
        f.write('kafka = { bootstrap_servers = "%s"; %s };\n' % (bootstrap, _env("BENCH_KAFKA_CONF", "")))
        if avro:
            f.write('schema_registry = { url = "%s"; schema_dir = "%s"; };\n' % avro)
        if protect:
            f.write(_env("BENCH_PROTECT", PROTECT_RULES) + "\n")


class RelayRun:
    """One relay process for one measurement: config, log dir, topics, footprint."""

    def __init__(self, bench, tag, db, slot, mode, create_slot, timestamp=None, fmt="json"):
        self.bench = bench
        self.tag = tag
        self.db = db
        self.slot = slot
        self.mode = mode
        self.fmt = fmt
        self.workdir = os.path.join(bench.s.out_dir, "logs", tag)
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir)
        self.prefix = "bench.%s.%s" % (tag, uuid.uuid4().hex[:6])
        self.topics = ["%s.%s" % (self.prefix, a) for a in AGGREGATES]
        for t in self.topics:
            bench.kafka.create_topic(t, partitions=3)
        self.config = os.path.join(self.workdir, "relay.conf")
        write_relay_config(self.config, db.dsn, bench.kafka.bootstrap, slot, self.prefix + ".${aggregate_type}",
                           mode, create_slot, timestamp, avro=bench.avro_setup() if fmt == "avro" else None,
                           protect=fmt == "protected")
        env = protect_credentials(self.workdir) if fmt == "protected" else None
        self.relay = relayctl.Relay(self.config, self.workdir, binary=bench.s.relay_bin, env=env)
        self.pid = None
        self.t_start = None

    def start(self):
        self.t_start = time.monotonic()
        self.relay.start()
        self.pid = self.relay.proc.pid
        return self

    def alive(self):
        return self.relay.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise BenchError("relay %s exited with %s:\n%s" % (self.tag, self.relay.proc.returncode,
                                                               harness.tail(self.relay.log_path)))

    def streaming(self):
        return "streaming from slot" in self.relay.log()

    def kafka_transactions(self):
        """Kafka transactions this relay committed (exactly-once), or None."""
        m = re.search(r"transactional\.id (\S+),", self.relay.log())
        return count_checkpoints(self.bench.kafka.bootstrap, m.group(1)) if m else None

    def cpu(self):
        return proc_cpu(self.pid)

    def mem(self):
        return proc_mem(self.pid)

    def stop(self):
        rc = self.relay.stop(timeout=90)
        if rc != 0:
            log("relay %s exited with %s at SIGTERM (log: %s)" % (self.tag, rc, self.relay.log_path))
        return rc

    def cleanup(self):
        if self.relay.proc is not None and self.relay.proc.poll() is None:
            self.relay.kill()
        self.bench.delete_topics(self.topics)
        self.bench.drop_slot(self.db, self.slot)


# ---------------------------------------------------------------------------
# Counting what arrived (read_committed)
# ---------------------------------------------------------------------------

def count_records(bootstrap, topics, expected=None, timeout=300, wire_format=False):
    """Records of all partitions of topics up to the last stable offset (read_committed).

    With expected, keeps reading until that many arrived (or timeout). wire_format: every value
    must be in Confluent's wire format (magic byte 0, a 4-byte schema id, then Avro)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "log_level": 0, "error_cb": lambda e: None})
    md = c.list_topics(timeout=30)
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in md.topics[t].partitions]
    c.assign(parts)
    n = 0
    eof = set()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for m in c.consume(num_messages=10000, timeout=0.5):
                err = m.error()
                if err is None:
                    n += 1
                    eof.discard((m.topic(), m.partition()))
                    v = m.value()
                    if wire_format and (v is None or len(v) < 6 or v[0] != 0):
                        raise BenchError("a record of %s is not in the Avro wire format: %r"
                                         % (m.topic(), (v or b"")[:16]))
                elif err.code() == KafkaError._PARTITION_EOF:
                    eof.add((m.topic(), m.partition()))
            if len(eof) == len(parts) and (expected is None or n >= expected):
                break
    finally:
        c.close()
    return n


def count_checkpoints(bootstrap, key):
    """Committed checkpoint records of one transactional.id: one per Kafka transaction of the relay."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "log_level": 0, "error_cb": lambda e: None})
    c.assign([TopicPartition(CHECKPOINT_TOPIC, 0, OFFSET_BEGINNING)])
    n = 0
    deadline = time.monotonic() + 60
    key = key.encode()
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                continue
            n += m.key() == key
    finally:
        c.close()
    return n


# ---------------------------------------------------------------------------
# Live writers and the latency consumer (separate processes: no GIL between them)
# ---------------------------------------------------------------------------

def _child_signals():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def writer_main(dsn, wid, nwriters, rate, t_start, t_end, stop_ev, out_q):
    """Commits one outbox row per transaction at rate rows/s (0: as fast as it can) until t_end."""
    _child_signals()
    import psycopg2
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("PREPARE ins (text, text, jsonb) AS INSERT INTO outbox.events "
                "(aggregate_type, aggregate_id, event_type, payload, headers) "
                "VALUES ($1, $2, 'Changed', $3, '{\"tenant\": \"t1\"}')")
    pad = "p" * 170
    interval = 1.0 / rate if rate else 0.0
    n = 0
    late = 0.0
    next_t = t_start + (wid * interval / nwriters if rate else 0.0)
    now = time.time()
    if next_t > now:
        time.sleep(next_t - now)
    while True:
        now = time.time()
        if now >= t_end or stop_ev.is_set():
            break
        if rate:
            if next_t > now:
                time.sleep(next_t - now)
            else:
                late = max(late, now - next_t)
            next_t += interval
        seq = n * nwriters + wid
        agg = AGGREGATES[seq % 3]
        payload = ('{"seq": %d, "writer": %d, "user_id": "u-%d", "document": "passport", '
                   '"status": "id_verified", "note": "%s"}' % (seq, wid, seq % 10000, pad))
        cur.execute("EXECUTE ins (%s, %s, %s)", (agg, "%s-%d" % (agg, seq % 10000), payload))
        n += 1
    conn.close()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out_q.put({"writer": wid, "rows": n, "seconds": time.time() - t_start, "max_late_s": late,
               "cpu_s": ru.ru_utime + ru.ru_stime})


def consumer_main(bootstrap, topics, fetch_wait_ms, ready_ev, ctl, out_q):
    """read_committed consumer: latency = receive time - record timestamp (the commit time).

    Reads topics from the beginning and counts every record, those already there before the
    writers start included ("before_ready"): the caller stops it at what the topics should hold."""
    _child_signals()
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "fetch.wait.max.ms": fetch_wait_ms, "log_level": 0, "error_cb": lambda e: None})
    md = c.list_topics(timeout=30)
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in md.topics[t].partitions])
    seen = {"ts": [], "lat": [], "last_seen": None}
    # connections, first fetches and the records already there (a warm-up's) before the writers start
    polls, taken, t_limit = 0, 1, time.time() + 30
    while (polls < 10 or taken) and time.time() < t_limit:
        taken = _consumer_take(seen, c.consume(num_messages=1000, timeout=0.1))
        polls += 1
    before = len(seen["ts"])
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    ready_ev.set()
    expected = None
    deadline = None
    while True:
        # consume(n, timeout) waits for n messages or the timeout: it would hold records back.
        # poll() returns the first one as soon as it is there; consume(timeout=0) takes the
        # ones already fetched.
        first = c.poll(0.05)
        if first is not None:
            _consumer_take(seen, [first] + c.consume(num_messages=2000, timeout=0))
        if ctl.poll():
            expected, deadline = ctl.recv()
        if expected is not None and (len(seen["ts"]) >= expected or time.time() >= deadline):
            break
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.time() - t0
    c.close()
    out_q.put({"received": len(seen["ts"]), "before_ready": before, "ts": seen["ts"], "lat": seen["lat"],
               "last_seen": seen["last_seen"],
               "cpu_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime), "wall_s": wall})


def _consumer_take(seen, msgs):
    """Notes each record's timestamp and latency (now - timestamp), and when the last one came."""
    now_ms = time.time() * 1000.0
    n = 0
    for m in msgs:
        if m.error() is not None:
            continue
        ts = m.timestamp()[1]
        seen["ts"].append(ts)
        seen["lat"].append(now_ms - ts)
        n += 1
    if n:
        seen["last_seen"] = now_ms / 1000.0
    return n


def latency_figures(cres, t_start, t_end, already=0):
    """The consumer's result as figures: received (less already, the records there before),
    percentiles of the records committed after the first LIVE_WARMUP_S, and drain_s, when the
    last record arrived after the writers stopped."""
    cutoff = (t_start + LIVE_WARMUP_S) * 1000.0
    lat = sorted(l for ts, l in zip(cres["ts"], cres["lat"]) if ts >= cutoff)
    return {"received": cres["received"] - already, "measured_rows": len(lat),
            "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
            "p999_ms": percentile(lat, 99.9), "max_ms": lat[-1] if lat else None,
            "drain_s": (cres["last_seen"] - t_end) if cres["last_seen"] else None}


class LiveLoad:
    """One live run's load: the latency consumer on topics, then writers at rate rows/s (0: as fast
    as they can). start() returns when the writers begin (t_start); they stop at t_end."""

    def __init__(self, bootstrap, topics, fetch_wait_ms, dsn, nwriters, rate):
        self.ctx = multiprocessing.get_context("spawn")
        self.consumer_args = (bootstrap, topics, fetch_wait_ms)
        self.dsn, self.nwriters, self.rate = dsn, nwriters, rate
        self.procs = []
        self.stop_ev = self.t_start = self.t_end = None

    def _spawn(self, target, args):
        p = self.ctx.Process(target=target, args=args)
        p.start()
        self.procs.append(p)

    def start(self, seconds):
        """The consumer first (connected, caught up with the topics), then the writers from 1 s on."""
        ready, self.stop_ev = self.ctx.Event(), self.ctx.Event()
        self.ctl, ctl_child = self.ctx.Pipe()
        self.cq, self.wq = self.ctx.Queue(), self.ctx.Queue()
        self._spawn(consumer_main, self.consumer_args + (ready, ctl_child, self.cq))
        if not ready.wait(60):
            raise BenchError("the latency consumer did not start")
        self.t_start = time.time() + 1.0
        self.t_end = self.t_start + seconds
        per_writer = self.rate / self.nwriters if self.rate else 0
        for w in range(self.nwriters):
            self._spawn(writer_main, (self.dsn, w, self.nwriters, per_writer, self.t_start, self.t_end,
                                      self.stop_ev, self.wq))
        while time.time() < self.t_start:
            time.sleep(0.01)

    def writers(self):
        """Each writer's result (rows, seconds, ...), once it stopped."""
        return [self.wq.get(timeout=self.t_end - time.time() + 60) for _ in range(self.nwriters)]

    def consumer(self, expected):
        """Stops the consumer at expected records (or 60 s from now); its result."""
        self.ctl.send((expected, time.time() + 60))
        return self.cq.get(timeout=180)

    def stop(self):
        """Stops the writers, waits for the processes (they end once their results are taken), ends
        the others."""
        if self.stop_ev is not None:
            self.stop_ev.set()
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(10)


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------

SETUP_SQL = """
CREATE TABLE IF NOT EXISTS public.other (id bigserial PRIMARY KEY, note text NOT NULL);
CREATE OR REPLACE FUNCTION bench_other(g bigint) RETURNS bigint LANGUAGE sql VOLATILE AS
$$ INSERT INTO public.other (note) VALUES (g || repeat('o', 280)) RETURNING id $$;
-- Outbox rows lo..hi, each right after one row of public.other (which the relay does not read).
CREATE OR REPLACE FUNCTION bench_rows(lo bigint, hi bigint) RETURNS bigint LANGUAGE sql VOLATILE AS $$
  WITH ins AS (
    INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, headers)
    SELECT (ARRAY['user','document','liveness'])[1 + g %% 3],
           (ARRAY['user','document','liveness'])[1 + g %% 3] || '-' || (g %% 10000),
           CASE WHEN o > 0 THEN 'Changed' ELSE 'Never' END,
           PAYLOAD, '{"tenant": "t1"}'::jsonb
    FROM (SELECT g, bench_other(g) AS o FROM generate_series(lo, hi) g) s
    RETURNING 1)
  SELECT count(*) FROM ins
$$;
CREATE OR REPLACE PROCEDURE bench_small_txns(first bigint, txns bigint, per int) LANGUAGE plpgsql AS $$
BEGIN
  FOR t IN 0 .. txns - 1 LOOP
    PERFORM bench_rows(first + t * per, first + t * per + per - 1);
    COMMIT;
  END LOOP;
END $$;
""".replace("PAYLOAD", PAYLOAD_SQL).replace("%%", "%")


class Bench:
    def __init__(self, settings, pg, kafka, results):
        self.s = settings
        self.pg = pg
        self.kafka = kafka
        self.results = results
        self.seq = 0
        self.registry = None    # harness.SchemaRegistry, started by the first Avro run
        self.schema_dir = None

    @property
    def registry_pid(self):
        return self.registry.proc.pid if self.registry is not None and self.registry.proc else None

    def avro_setup(self):
        """(registry URL, schema_dir) for a relay in format "avro": the schema file of the
        backlog's event type in a temp schema_dir, and a real schema registry (Apicurio, as in the
        tests), both made on first use. Each relay run has topics of its own, so its subjects are
        new: it registers its schemas (3 subjects) while it catches up, as a first start does."""
        if self.registry is None:
            log("starting the schema registry (Avro runs)")
            self.registry = harness.SchemaRegistry().start()
            self.schema_dir = os.path.join(self.s.out_dir, "schemas")
            os.makedirs(self.schema_dir, exist_ok=True)
            with open(os.path.join(self.schema_dir, AVRO_EVENT_TYPE + ".avsc"), "w") as f:
                json.dump(AVRO_SCHEMA, f, indent=2)
        return self.registry.url, self.schema_dir

    @property
    def kafka_pid(self):
        return self.kafka.proc.pid

    def wait_quiet(self, what):
        """Measures what else runs on the machine; waits up to BENCH_WAIT_QUIET s for it to stop."""
        deadline = time.monotonic() + self.s.wait_quiet
        while True:
            w = CpuWindow(self.pg, self.kafka_pid, registry_pid=self.registry_pid).start()
            time.sleep(2.0)
            foreign = w.stop()["foreign_cores"]
            if foreign <= 0.1:
                return foreign
            if time.monotonic() >= deadline:
                log("WARNING (%s): other processes use %.2f cores of %d; the figures will suffer"
                    % (what, foreign, os.cpu_count()))
                return foreign
            log("%s: other processes use %.2f cores; waiting for a quiet machine" % (what, foreign))
            time.sleep(8.0)

    def slot_name(self, *parts):
        """A slot name never used before in this benchmark (and so a fresh transactional.id)."""
        self.seq += 1
        return "_".join(["b%d" % self.seq] + [str(p).replace("-", "_") for p in parts])

    # -- housekeeping -------------------------------------------------------

    def save(self):
        write_outputs(self.s, self.results)

    def delete_topics(self, topics):
        try:
            futures = self.kafka.admin().delete_topics(list(topics), operation_timeout=30, request_timeout=30)
            for f in futures.values():
                try:
                    f.result()
                except Exception:
                    pass
        except Exception as e:
            log("deleting topics failed: %s" % e)

    def drop_slot(self, db, slot):
        try:
            db.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                       "WHERE slot_name = %s AND NOT active", (slot,))
        except Exception as e:
            log("dropping slot %s failed: %s" % (slot, e))

    def new_database(self, name):
        db = self.pg.create_database("%s_%s" % (name, uuid.uuid4().hex[:6]))
        relayctl.install_outbox(db)
        db.execute(SETUP_SQL)
        return db

    def drop_database(self, db):
        try:
            self.pg.drop_database(db.name)
        except Exception as e:
            log("dropping database %s failed: %s" % (db.name, e))

    # -- catch-up -----------------------------------------------------------

    def write_backlog(self, db, shape, rows):
        """Writes the backlog; returns the end LSN of the last commit record (an int)."""
        conn = db.connect(autocommit=True)
        cur = conn.cursor()
        if shape == "large":
            per, txns = rows // 10, 10
        else:
            per, txns = 10, rows // 10
        if txns > 1 and shape == "small":
            cur.execute("CALL bench_small_txns(0, %s, %s)", (txns - 1, per))
            done = txns - 1
        else:
            done = 0
        for t in range(done, txns):
            cur.execute("BEGIN")
            cur.execute("SELECT bench_rows(%s, %s)", (t * per, t * per + per - 1))
            cur.execute("SELECT pg_current_xact_id()::text, pg_current_wal_insert_lsn()::text")
            xid, before_commit = cur.fetchone()
            cur.execute("COMMIT")
        cur.execute("SELECT pg_current_wal_flush_lsn()::text")
        after = cur.fetchone()[0]
        cur.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        cur.execute("SELECT end_lsn::text FROM pg_get_wal_records_info(%s, %s) "
                    "WHERE resource_manager = 'Transaction' AND record_type LIKE 'COMMIT%%' "
                    "AND xid::text = %s", (before_commit, after, xid))
        row = cur.fetchone()
        if row is None:
            raise BenchError("commit record of the last backlog transaction (xid %s) not found" % xid)
        cur.execute("SELECT count(*), avg(octet_length(payload::text)) FROM outbox.events")
        count, avg_payload = cur.fetchone()
        conn.close()
        if count != rows:
            raise BenchError("backlog has %d outbox rows, expected %d" % (count, rows))
        return lsn_int(row[0]), float(avg_payload)

    def run_recvlogical(self, db, slot, end_lsn, tag):
        """pg_recvlogical with the relay's wal2json options to /dev/null, until end_lsn."""
        if self.s.wait_quiet:
            self.wait_quiet(tag)
        cmd = [PG_RECVLOGICAL, "-d", db.dsn, "--slot", slot, "--start", "-f", "/dev/null", "--no-loop",
               "--endpos", lsn_text(end_lsn)]
        for o in WAL2JSON_OPTIONS:
            cmd += ["-o", o]
        mon = PgMonitor(db)
        logpath = os.path.join(self.s.out_dir, "logs", tag + ".log")
        os.makedirs(os.path.dirname(logpath), exist_ok=True)
        win = CpuWindow(self.pg, self.kafka_pid, registry_pid=self.registry_pid)
        with open(logpath, "w") as out:
            win.start()
            t0 = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            ws_cpu = None
            ws_pid = None
            while True:
                pid, wstatus, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if ws_pid is None:
                    ws_pid = mon.slot(slot)[1]
                elif (c := proc_cpu(ws_pid)) is not None:
                    ws_cpu = c
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            win.walsender_pid = ws_pid
            cpu_use = win.stop()
            status = proc.returncode = os.waitstatus_to_exitcode(wstatus)
        confirmed, _ = mon.slot(slot)
        mon.close()
        if status != 0:
            raise BenchError("pg_recvlogical exited with %s:\n%s" % (status, harness.tail(logpath)))
        return {"seconds": elapsed, "walsender_cpu_s": ws_cpu, "confirmed": lsn_text(confirmed),
                "client_cpu_s": ru.ru_utime + ru.ru_stime, "cpu_use": cpu_use}

    def relay_catchup(self, db, slot, mode, end_lsn, rows, tag, perf=False, fmt="json"):
        if self.s.wait_quiet:
            self.wait_quiet(tag)
        rr = RelayRun(self, tag, db, slot, mode, create_slot=False, fmt=fmt)
        mon = PgMonitor(db)
        perf_proc = None
        timeout = max(600.0, rows / 500.0)
        try:
            if perf:
                perf_data = os.path.join(self.s.out_dir, "perf.data")
                perf_proc = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "999", "-o", perf_data],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            rr.start()
            win = CpuWindow(self.pg, self.kafka_pid, rr.pid, registry_pid=self.registry_pid).start()
            t_stream = None
            ws_cpu = None
            timeline = []  # (seconds since start, MB of WAL confirmed), every 0.5 s
            start_lsn = None
            while True:
                rr.check_alive()
                confirmed, ws_pid = mon.slot(slot)
                now = time.monotonic()
                if start_lsn is None:
                    start_lsn = confirmed
                if not timeline or now - rr.t_start - timeline[-1][0] >= 0.5:
                    timeline.append((round(now - rr.t_start, 2), round((confirmed - start_lsn) / 1048576.0, 1)))
                if confirmed >= end_lsn:
                    break
                if ws_pid is not None and (c := proc_cpu(ws_pid)) is not None:
                    ws_cpu = c
                if t_stream is None and rr.streaming():
                    t_stream = now - rr.t_start
                if now - rr.t_start > timeout:
                    raise BenchError("relay %s did not catch up in %.0f s" % (tag, timeout))
                time.sleep(0.05)
            elapsed = time.monotonic() - rr.t_start
            if ws_pid is not None and (c := proc_cpu(ws_pid)) is not None:
                ws_cpu = c
            cpu = rr.cpu()
            rss, hwm = rr.mem()
            win.walsender_pid = ws_pid
            cpu_use = win.stop()
            if perf_proc is not None:
                perf_proc.send_signal(signal.SIGINT)
                perf_proc.wait(60)
                perf_proc = None
            rr.stop()
            res = {"format": fmt, "seconds": elapsed, "rows_per_s": rows / elapsed, "startup_s": t_stream,
                   "pid": rr.pid,
                   "cpu_s": cpu, "cpu_us_per_row": cpu / rows * 1e6, "rss_end_mb": mb(rss),
                   "peak_rss_mb": mb(hwm), "walsender_cpu_s": ws_cpu, "cpu_use": cpu_use,
                   "confirmed_mb_timeline": timeline}
            if mode == "exactly-once":
                res["kafka_transactions"] = rr.kafka_transactions()
            if self.s.verify:
                n = count_records(self.kafka.bootstrap, rr.topics, expected=rows, timeout=120,
                                  wire_format=fmt == "avro")
                res["records_in_kafka"] = n
                if n < rows or (mode == "exactly-once" and n != rows):
                    raise BenchError("%s: %d records in Kafka, expected %d" % (tag, n, rows))
            return res
        finally:
            if perf_proc is not None:
                perf_proc.send_signal(signal.SIGINT)
                perf_proc.wait(60)
            mon.close()
            rr.cleanup()

    def catchup_shape(self, shape, rows, runs, modes, record=True, perf=False, formats=None):
        db = self.new_database("bench_" + shape)
        variants = [(m, f) for m in modes for f in (formats or self.s.formats)]
        try:
            slots = {}
            for r in range(runs):
                for kind in ["recv"] + variants:
                    name = self.slot_name(shape, *(kind if kind != "recv" else (kind,)), r)
                    rows_ = db.query("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')",
                                     (name,))
                    slots[(kind, r)] = name
                    start_lsn = lsn_int(rows_[0][0])
            t0 = time.monotonic()
            end_lsn, avg_payload = self.write_backlog(db, shape, rows)
            write_s = time.monotonic() - t0
            wal_mb = (end_lsn - start_lsn) / 1048576.0
            log("catch-up %s: backlog of %d rows written in %.1f s (%.0f MB of WAL, payload %.0f bytes), "
                "end %s" % (shape, rows, write_s, wal_mb, avg_payload, lsn_text(end_lsn)))
            entry = {"shape": shape, "rows": rows,
                     "transactions": 10 if shape == "large" else rows // 10,
                     "uncaptured_rows": rows, "payload_bytes": avg_payload, "wal_mb": wal_mb,
                     "backlog_write_s": write_s, "ceiling": [],
                     "relay": {variant_label(m, f): [] for m, f in variants}}
            if record:
                self.results["catchup"][shape] = entry
            for r in range(runs):
                res = self.run_recvlogical(db, slots[("recv", r)], end_lsn, "catchup-%s-recv-%d" % (shape, r))
                res["rows_per_s"] = rows / res["seconds"]
                self.drop_slot(db, slots[("recv", r)])
                entry["ceiling"].append(res)
                log("catch-up %s run %d: pg_recvlogical %.1f s, %.0f rows/s" % (shape, r + 1, res["seconds"],
                                                                                 res["rows_per_s"]))
                for mode, fmt in variants:
                    tag = "catchup-%s-%s-%s-%d" % (shape, mode, fmt, r)
                    rr = self.relay_catchup(db, slots[((mode, fmt), r)], mode, end_lsn, rows, tag, perf=perf,
                                            fmt=fmt)
                    rr["vs_ceiling"] = rr["rows_per_s"] / res["rows_per_s"]
                    label = variant_label(mode, fmt)
                    entry["relay"][label].append(rr)
                    log("catch-up %s run %d: relay %s %.1f s, %.0f rows/s (%.0f%% of pg_recvlogical), "
                        "peak RSS %.1f MB, %.2f us CPU/row" % (shape, r + 1, label, rr["seconds"], rr["rows_per_s"],
                                                               100 * rr["vs_ceiling"], rr["peak_rss_mb"],
                                                               rr["cpu_us_per_row"]))
                if record:
                    self.save()
            return entry
        finally:
            self.drop_database(db)

    def catchup(self):
        self.results["catchup"] = {}
        # Warm-up (JIT of the broker, caches): a small backlog, not reported.
        warm = min(self.s.rows, 50000)
        log("catch-up warm-up with %d rows" % warm)
        self.catchup_shape("small", warm, 1, ["exactly-once"], record=False)  # every format: the registry's JIT too
        for shape in self.s.shapes:
            self.catchup_shape(shape, self.s.rows, self.s.runs, self.s.modes)
        if self.registry is not None and not self.s.perf:  # not a load on the later phases
            self.registry.cleanup()
            self.registry = None

    def profile(self):
        """One extra catch-up (small transactions, exactly-once) under perf record -a."""
        if shutil.which("perf") is None:
            log("perf not found: no profile")
            return
        rows = min(self.s.rows, 300000)
        log("profile: catch-up of %d rows under perf record -a" % rows)
        fmt = _env("BENCH_PERF_FORMAT", "json")
        entry = self.catchup_shape("small", rows, 1, ["exactly-once"], record=False, perf=True, formats=[fmt])
        data = os.path.join(self.s.out_dir, "perf.data")
        reports = {}
        label = variant_label("exactly-once", fmt)
        pid = str(entry["relay"][label][0]["pid"])
        for name, args in (("relay_threads", ["--pid", pid, "--sort", "comm", "--percentage", "relative"]),
                           ("relay_dso", ["--pid", pid, "--sort", "dso", "--percentage", "relative"]),
                           ("relay_symbols", ["--pid", pid, "--sort", "dso,symbol", "--percentage", "relative"]),
                           ("postgres_symbols", ["--comms", "postgres", "--sort", "dso,symbol",
                                                 "--percentage", "relative"])):
            p = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                                "--percent-limit", "0.5"] + args,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            with open(os.path.join(self.s.out_dir, "perf-%s.txt" % name), "w") as f:
                f.write(p.stdout)
            reports[name] = [ln for ln in p.stdout.splitlines() if ln.strip() and not ln.startswith("#")][:25]
        self.results["profile"] = {"rows": rows, "format": fmt, "relay": entry["relay"][label][0],
                                   "ceiling": entry["ceiling"][0], "top": reports}
        self.save()

    # -- live latency ---------------------------------------------------------

    def live_run(self, db, mode, rate_name, run, seconds=None):
        rate = 0 if rate_name == "max" else int(rate_name)
        nwriters = self.s.max_writers if rate == 0 else max(1, int(math.ceil(rate / 2500.0)))
        tag = "live-%s-%s-%s" % (rate_name, mode, run)
        if self.s.wait_quiet:
            self.wait_quiet(tag)
        slot = self.slot_name("live", rate_name, mode, run)
        rr = RelayRun(self, tag, db, slot, mode, create_slot=True, timestamp="commit")
        load = LiveLoad(self.kafka.bootstrap, rr.topics, self.s.fetch_wait_ms, db.dsn, nwriters, rate)
        try:
            rr.start()
            harness.wait_for(lambda: rr.check_alive() or rr.streaming(), 60, what="relay streaming")
            mon = PgMonitor(db)
            load.start(seconds or self.s.live_seconds)
            t_start, t_end = load.t_start, load.t_end
            cpu0 = rr.cpu()
            thr0, thr_t0 = thread_cpu(rr.pid), time.monotonic()
            ws_pid = mon.slot(slot)[1]
            win = CpuWindow(self.pg, self.kafka_pid, rr.pid)
            win.walsender_pid = ws_pid
            win.start()
            max_lag = max_decode_lag = max_relay_lag = 0
            while time.time() < t_end:
                rr.check_alive()
                confirmed, _ = mon.slot(slot)
                max_lag = max(max_lag, mon.wal_lsn() - confirmed)
                dl, rl = mon.lags(ws_pid)
                max_decode_lag, max_relay_lag = max(max_decode_lag, dl), max(max_relay_lag, rl)
                time.sleep(0.5)
            writers = load.writers()
            written = sum(w["rows"] for w in writers)
            write_s = max(w["seconds"] for w in writers)
            cpu_use = win.stop({"writers_cpu_s": sum(w["cpu_s"] for w in writers)})
            cres = load.consumer(written)
            cpu = rr.cpu() - cpu0
            threads = thread_delta(thr0, thread_cpu(rr.pid), time.monotonic() - thr_t0)
            rss, hwm = rr.mem()
            mon.close()
            life_s = time.monotonic() - rr.t_start
            rr.stop()
            load.stop()
            per_second = {}
            for ts, l in zip(cres["ts"], cres["lat"]):
                sec = int((ts / 1000.0) - t_start)
                per_second[sec] = max(per_second.get(sec, 0.0), l)
            res = {"target_rate": rate_name, "writers": nwriters, "rows": written,
                   "rows_per_s": written / write_s, **latency_figures(cres, t_start, t_end),
                   "consumer_cpu_share": cres["cpu_s"] / cres["wall_s"] if cres["wall_s"] else None,
                   "writer_max_late_s": max(w["max_late_s"] for w in writers),
                   "max_slot_lag_kb": max_lag / 1024.0, "max_decode_lag_kb": max_decode_lag / 1024.0,
                   "max_relay_lag_kb": max_relay_lag / 1024.0, "cpu_use": cpu_use,
                   "cpu_s": cpu, "cpu_us_per_row": cpu / written * 1e6 if written else None,
                   "peak_rss_mb": mb(hwm), "rss_end_mb": mb(rss), "relay_threads": threads,
                   "max_ms_by_second": [round(per_second[k], 1) for k in sorted(per_second)]}
            if mode == "exactly-once":
                res["kafka_transactions"] = rr.kafka_transactions()
                res["kafka_transactions_per_s"] = res["kafka_transactions"] / life_s
            res["consumer_kept_up"] = bool(res["consumer_cpu_share"] is not None and res["consumer_cpu_share"] < 0.8
                                           and cres["received"] >= written)
            res["rate_reached"] = rate == 0 or res["rows_per_s"] >= 0.97 * rate
            if cres["received"] < written:
                log("live %s: consumer got %d of %d rows" % (tag, cres["received"], written))
            if mode == "exactly-once" and cres["received"] > written:
                raise BenchError("%s: %d records for %d rows (duplicates)" % (tag, cres["received"], written))
            return res
        finally:
            load.stop()
            rr.cleanup()

    def live(self):
        self.results["live"] = []
        db = self.new_database("bench_live")
        try:
            # Warm-up (the broker's JIT above all, when no catch-up ran before): not reported.
            warm = self.s.live_warmup if self.s.live_warmup >= 0 else (5 if "catchup" in self.s.phases else 60)
            if warm:
                log("live warm-up: %d s at 5,000 rows/s, exactly-once" % warm)
                self.live_run(db, "exactly-once", "5000", "warmup", seconds=warm)
            for rate_name in self.s.rates:
                for mode in self.s.modes:
                    entry = {"rate": rate_name, "mode": mode, "runs": []}
                    self.results["live"].append(entry)
                for r in range(self.s.runs):
                    for mode in self.s.modes:
                        entry = [e for e in self.results["live"] if e["rate"] == rate_name and e["mode"] == mode][0]
                        res = self.live_run(db, mode, rate_name, r)
                        entry["runs"].append(res)
                        log("live %s rows/s %s run %d: %.0f rows/s by %d writers, p50 %.1f ms, p99 %.1f ms, "
                            "max %.1f ms, consumer CPU %.0f%%, relay %.2f us CPU/row, peak RSS %.1f MB"
                            % (rate_name, mode, r + 1, res["rows_per_s"], res["writers"], res["p50_ms"],
                               res["p99_ms"], res["max_ms"], 100 * res["consumer_cpu_share"],
                               res["cpu_us_per_row"], res["peak_rss_mb"]))
                        self.save()
                db.execute("TRUNCATE outbox.events")
        finally:
            self.drop_database(db)

    # -- Kafka outage ----------------------------------------------------------

    def outage_run(self, db, mode, run):
        tag = "outage-%s-%d" % (mode, run)
        if self.s.wait_quiet:
            self.wait_quiet(tag)
        slot = self.slot_name("outage", mode, run)
        rr = RelayRun(self, tag, db, slot, mode, create_slot=True)
        ctx = multiprocessing.get_context("spawn")
        procs = []
        series = []
        stop_sampling = threading.Event()
        marks = {}
        try:
            rr.start()
            harness.wait_for(lambda: rr.check_alive() or rr.streaming(), 60, what="relay streaming")
            t_ref = time.time()
            win = CpuWindow(self.pg, lambda: self.kafka_pid, rr.pid).start()

            def sample():
                mon = PgMonitor(db)
                try:
                    while not stop_sampling.is_set():
                        rss, hwm = rr.mem()
                        if rss is None:  # exited (a supervisor would restart it; so do we, below)
                            stop_sampling.wait(0.5)
                            continue
                        confirmed, _ = mon.slot(slot)
                        series.append({"t": round(time.time() - t_ref, 2), "rss_mb": mb(rss),
                                       "lag_kb": (mon.wal_lsn() - confirmed) / 1024.0})
                        stop_sampling.wait(0.5)
                finally:
                    mon.close()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            stop_ev = ctx.Event()
            wq = ctx.Queue()
            rate = self.s.outage_rate
            nwriters = max(1, int(math.ceil(rate / 2500.0)))
            t_start = time.time() + 1.0
            for w in range(nwriters):
                p = ctx.Process(target=writer_main, args=(db.dsn, w, nwriters, rate / nwriters, t_start,
                                                          t_start + 86400, stop_ev, wq))
                p.start()
                procs.append(p)
            mon = PgMonitor(db)
            time.sleep(1.0 + OUTAGE_BASELINE_S)
            rr.check_alive()
            marks["stop"] = time.time() - t_ref
            self.kafka.stop()
            marks["stopped"] = time.time() - t_ref
            exits = []

            def supervise(restart):
                """Notes a relay exit; restarts it (as systemd would, Restart=on-failure) when asked."""
                if rr.alive():
                    return
                if not exits or exits[-1].get("restarted"):
                    errors = [ln for ln in rr.relay.log().splitlines() if " error " in ln] or [""]
                    exits.append({"t": round(time.time() - t_ref, 1), "code": rr.relay.proc.returncode,
                                  "last_error": errors[-1][:400]})
                    log("%s: the relay exited with %s at %.0f s: %s" % (tag, exits[-1]["code"], exits[-1]["t"],
                                                                        exits[-1]["last_error"]))
                if restart:
                    if len(exits) > 5:
                        raise BenchError("%s: the relay keeps exiting" % tag)
                    rr.start()
                    exits[-1]["restarted"] = round(time.time() - t_ref, 1)

            until = time.time() + self.s.outage_seconds
            while time.time() < until:
                supervise(restart=False)
                time.sleep(0.2)
            marks["start"] = time.time() - t_ref
            self.kafka.start()
            marks["up"] = time.time() - t_ref
            supervise(restart=True)
            target = mon.wal_lsn()
            while True:
                supervise(restart=True)
                if mon.slot(slot)[0] >= target:
                    break
                if time.time() - t_ref - marks["up"] > 600:
                    raise BenchError("%s: no catch-up within 600 s after the broker came back" % tag)
                time.sleep(0.1)
            marks["caught_up"] = time.time() - t_ref
            time.sleep(5.0)
            supervise(restart=True)
            stop_ev.set()
            writers = [wq.get(timeout=60) for _ in range(nwriters)]
            written = sum(w["rows"] for w in writers)
            marks["writers_stopped"] = time.time() - t_ref
            time.sleep(2.0)
            supervise(restart=True)
            stop_sampling.set()
            sampler.join(10)
            rss, hwm = rr.mem()
            cpu = rr.cpu()
            cpu_use = win.stop()
            mon.close()
            rr.stop()
            n = count_records(self.kafka.bootstrap, rr.topics, expected=written, timeout=180)

            def rss_in(a, b):
                vals = [p["rss_mb"] for p in series if a <= p["t"] < b]
                return vals
            before = rss_in(0, marks["stop"])
            during = rss_in(marks["stop"], marks["up"])
            after = rss_in(marks["up"], 1e9)
            half = marks["stop"] + (marks["up"] - marks["stop"]) / 2
            res = {"mode": mode, "outage_s": marks["start"] - marks["stopped"], "rate": rate, "rows": written,
                   "records_in_kafka": n, "catch_up_s": marks["caught_up"] - marks["up"],
                   "broker_stop_s": marks["stopped"] - marks["stop"],
                   "broker_restart_s": marks["up"] - marks["start"],
                   "unavailable_s": marks["up"] - marks["stop"],
                   "rss_before_mb": max(before) if before else None,
                   "rss_outage_peak_mb": max(during) if during else None,
                   "rss_outage_first_half_peak_mb": max(rss_in(marks["stop"], half) or [0]),
                   "rss_outage_end_mb": during[-1] if during else None,
                   "rss_after_peak_mb": max(after) if after else None,
                   "peak_rss_mb": mb(hwm), "rss_end_mb": mb(rss), "cpu_s": cpu,
                   "max_lag_mb": max(p["lag_kb"] for p in series) / 1024.0 if series else None,
                   "marks": marks, "series": series, "cpu_use": cpu_use, "relay_exits": exits}
            # Bounded: the second half of the outage adds less than 2 MB to the first half's peak.
            res["rss_bounded"] = (bool(during) and
                                  res["rss_outage_peak_mb"] <= res["rss_outage_first_half_peak_mb"] + 2.0)
            if n < written or (mode == "exactly-once" and n != written):
                res["error"] = "%d records in Kafka for %d rows" % (n, written)
            if exits:
                res["error"] = "the relay exited (%s) during the outage and was restarted%s" % (
                    exits[0]["code"], "; " + res["error"] if "error" in res else "")
            return res
        finally:
            stop_sampling.set()
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(10)
            self.kafka.ensure_running()
            rr.cleanup()

    def outage(self):
        self.results["outage"] = []
        db = self.new_database("bench_outage")
        try:
            for r in range(self.s.outage_runs):
                for mode in self.s.modes:
                    res = self.outage_run(db, mode, r)
                    self.results["outage"].append(res)
                    log("outage %s run %d: %.0f s down; RSS %.1f MB before, %.1f MB peak during, %.1f MB after; "
                        "caught up %.1f s after the broker was back; %d rows, %d records in Kafka"
                        % (mode, r + 1, res["outage_s"], res["rss_before_mb"] or 0, res["rss_outage_peak_mb"] or 0,
                           res["rss_after_peak_mb"] or 0, res["catch_up_s"], res["rows"], res["records_in_kafka"]))
                    self.save()
        finally:
            self.drop_database(db)


# ---------------------------------------------------------------------------
# Machine, versions, targets, output
# ---------------------------------------------------------------------------

def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    osname = ""
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
            osname = fields.get("PRETTY_NAME", "").strip('"')
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1048576.0, 1),
            "kernel": platform.release(), "os": osname}


def _dpkg_version(pkg):
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() or None


def versions(pg):
    v = {"postgresql": pg.query("SHOW server_version")[0][0],
         "wal2json": _dpkg_version("postgresql-15-wal2json"),
         "librdkafka": _dpkg_version("librdkafka1")}
    libs = os.path.join(REPO, ".cache", "kafka", harness.kafka_version(), "libs")  # KAFKA_VERSION
    try:
        v["kafka"] = [re.sub(r"^kafka_2\.13-|\.jar$", "", n) for n in os.listdir(libs)
                      if n.startswith("kafka_2.13-")][0]
    except (OSError, IndexError):
        v["kafka"] = None
    j = subprocess.run(["java", "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    v["java"] = (j.stdout.splitlines() or [""])[0].strip()
    try:
        import confluent_kafka
        v["python_confluent_kafka"] = confluent_kafka.version()[0]
    except ImportError:
        pass
    g = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    v["relay_commit"] = _env("BENCH_RELAY_COMMIT", g.stdout.strip()) or None
    return v


def tune_postgres(pg, slots_per_shape):
    """More slots than the test default (one per measured run of a shape), fewer checkpoints."""
    slots = max(16, slots_per_shape + 4)
    for k, val in (("max_replication_slots", str(slots)), ("max_wal_senders", str(slots)),
                   ("max_wal_size", "'8GB'")):
        pg.execute("ALTER SYSTEM SET %s = %s" % (k, val))
    pg.restart()


TARGETS = [
    # (id, text): the targets of docs/performance.md's "Targets" (the performance issue's)
    ("walsender", "catch-up: the walsender at least 95% busy (each shape and mode, JSON)"),
    ("ceiling", "catch-up: the relay at or above pg_recvlogical (each shape and mode, JSON)"),
    ("cpu", "relay CPU in catch-up: <= 2 µs per row (each shape and mode, JSON)"),
    ("live_eos", "live p99 at 5,000 rows/s, exactly-once: <= 20 ms"),
    ("live_alo", "live p99 at 5,000 rows/s, at-least-once: <= 10 ms"),
    ("eos_low", "exactly-once at 1,000 rows/s: relay CPU <= 100 µs per row"),
    ("rss", "peak RSS outside the outage: <= 16 MB"),
    ("outage_eos", "Kafka outage, exactly-once: RSS bounded, catches up afterwards"),
    ("outage_alo", "Kafka outage, at-least-once: RSS bounded, catches up afterwards"),
    ("avro_cpu", "catch-up with Avro: <= 1 µs more relay CPU per row than JSON (each shape and mode)"),
    ("avro_ceiling", "catch-up with Avro, exactly-once: >= pg_recvlogical (each shape)"),
    ("protect_cpu", "catch-up with a few protected fields: <= 1 µs more relay CPU per row than JSON"),
]


def variant_pairs(results, variant):
    """[(shape, mode, json runs, variant runs)] of the catch-ups measured plain and as variant."""
    out = []
    for shape, e in (results.get("catchup") or {}).items():
        for label, runs in e["relay"].items():
            other = e["relay"].get(variant_label(label, variant))
            if ", " not in label and runs and other:
                out.append((shape, label, runs, other))
    return out


def avro_pairs(results):
    """[(shape, mode, json runs, avro runs)] of the catch-ups measured in both formats."""
    return variant_pairs(results, "avro")


def avro_extra_us(json_runs, avro_runs):
    """A variant's extra relay CPU per row, each run against the JSON run of the same round (they
    ran one after the other on the same backlog): the list of differences, µs per row."""
    return [a["cpu_us_per_row"] - j["cpu_us_per_row"] for j, a in zip(json_runs, avro_runs)]


def note_failure(results, e):
    """A run that failed: its error kept in the results and logged with the traceback; exit code 1."""
    results["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()
    log("failed: %s" % results["error"])
    traceback.print_exc()
    return 1


def variant_table(pairs, name, title):
    """The markdown lines of a variant's catch-ups next to the JSON runs before them (none: [])."""
    if not pairs:
        return []
    lines = [title, "", "| backlog | mode | rows/s JSON | rows/s %s | %s vs pg_recvlogical | CPU µs/row JSON | "
             "CPU µs/row %s | %s − JSON µs/row |" % (name, name, name, name), "|---|---|---|---|---|---|---|---|"]
    for shape, mode, j, v in pairs:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            "10 large transactions" if shape == "large" else "transactions of 10 rows", mode,
            _cell([x["rows_per_s"] for x in j]), _cell([x["rows_per_s"] for x in v]),
            _cell([100 * x["vs_ceiling"] for x in v], "%.0f%%"),
            _cell([x["cpu_us_per_row"] for x in j], "%.2f"), _cell([x["cpu_us_per_row"] for x in v], "%.2f"),
            _cell(avro_extra_us(j, v), "%+.2f")))
    return lines + [""]


def walsender_busy(run):
    """The percentage of one core the walsender used while it streamed (from the reader's start-up
    on), or None when its CPU was not read."""
    ws, secs = run.get("walsender_cpu_s"), run["seconds"] - (run.get("startup_s") or 0.0)
    return 100.0 * ws / secs if ws is not None and secs > 0 else None


def plain_relay_runs(cu):
    """[(shape, mode, runs)] of the JSON catch-ups (not the Avro or protected variants)."""
    return [(shape, mode, runs) for shape, e in cu.items() for mode, runs in e["relay"].items()
            if runs and ", " not in mode]


def per_run_target(items, spec, met):
    """A target measured per (shape, mode): every median with its runs, met when met(median) holds for all."""
    meds = [(name, statistics.median(v), v) for name, v in items if v]
    if not meds:
        return None
    return {"measured": "; ".join("%s %s (runs: %s)" % (name, spec % m, ", ".join(spec % x for x in v))
                                  for name, m, v in meds), "met": all(met(m) for _, m, _ in meds)}


def evaluate(results):
    out = {}
    cu = results.get("catchup") or {}
    plain = plain_relay_runs(cu)
    busy = [("%s %s" % (shape, mode), [b for b in map(walsender_busy, runs) if b is not None])
            for shape, mode, runs in plain]
    ratios = [("%s %s" % (shape, mode), [100 * r["vs_ceiling"] for r in runs]) for shape, mode, runs in plain]
    for key, items, met in (("walsender", busy, lambda m: m >= 95.0), ("ceiling", ratios, lambda m: m >= 100.0)):
        t = per_run_target(items, "%.0f%%", met)
        if t:
            out[key] = t
    for mode, key, limit in (("exactly-once", "live_eos", 20.0), ("at-least-once", "live_alo", 10.0)):
        for e in results.get("live") or []:
            if e["rate"] == "5000" and e["mode"] == mode and e["runs"]:
                p99 = [r["p99_ms"] for r in e["runs"]]
                med = statistics.median(p99)
                out[key] = {"measured": "%.1f ms (runs: %s)" % (med, ", ".join("%.1f" % x for x in p99)),
                            "met": med <= limit}
    for e in results.get("live") or []:
        if e["rate"] == "1000" and e["mode"] == "exactly-once" and e["runs"]:
            us = [r["cpu_us_per_row"] for r in e["runs"]]
            med = statistics.median(us)
            out["eos_low"] = {"measured": "%.1f µs/row (runs: %s)" % (med, ", ".join("%.1f" % x for x in us)),
                              "met": med <= 100.0}
    peaks = [r["peak_rss_mb"] for e in cu.values() for runs in e["relay"].values() for r in runs]
    cpus = [("catch-up %s %s" % (shape, mode), statistics.median(r["cpu_us_per_row"] for r in runs))
            for shape, mode, runs in plain]
    for e in results.get("live") or []:
        peaks += [r["peak_rss_mb"] for r in e["runs"]]
    if peaks:
        out["rss"] = {"measured": "%.1f MB (largest of all runs)" % max(peaks), "met": max(peaks) <= 16.0}
    if cpus:
        worst = max(cpus, key=lambda x: x[1])
        out["cpu"] = {"measured": "%.2f µs/row at most (%s); %s" % (worst[1], worst[0], ", ".join(
            "%s %.2f" % c for c in cpus)), "met": worst[1] <= 2.0}
    pairs = avro_pairs(results)
    if pairs:
        extra = [(shape, mode, statistics.median(avro_extra_us(j, a))) for shape, mode, j, a in pairs]
        worst = max(extra, key=lambda x: x[2])
        out["avro_cpu"] = {"measured": "+%.2f µs/row at most (%s %s); %s" % (worst[2], worst[0], worst[1], ", ".join(
            "%s %s %+.2f" % x for x in extra)), "met": worst[2] <= 1.0}
        eos = [(shape, [r["vs_ceiling"] for r in a]) for shape, mode, j, a in pairs if mode == "exactly-once"]
        if eos:
            out["avro_ceiling"] = {"measured": "; ".join("%s %.0f%% (runs: %s)" % (
                shape, 100 * statistics.median(v), ", ".join("%.0f%%" % (100 * x) for x in v)) for shape, v in eos),
                "met": all(statistics.median(v) >= 1.0 for _, v in eos)}
    pp = variant_pairs(results, "protected")
    if pp:
        extra = [(shape, mode, statistics.median(avro_extra_us(j, p))) for shape, mode, j, p in pp]
        worst = max(extra, key=lambda x: x[2])
        out["protect_cpu"] = {"measured": "+%.2f µs/row at most (%s %s); %s" % (worst[2], worst[0], worst[1], ", ".join(
            "%s %s %+.2f" % x for x in extra)), "met": worst[2] <= 1.0}
    og = results.get("outage") or []
    for mode, key in (("exactly-once", "outage_eos"), ("at-least-once", "outage_alo")):
        runs = [r for r in og if r["mode"] == mode]
        if runs:
            out[key] = {"measured": "; ".join(
                "RSS %.1f MB before, %.1f MB at mid-outage, %.1f MB at its end%s; caught up %.1f s after the "
                "broker was back; %s" % (
                    r["rss_before_mb"] or 0, r["rss_outage_first_half_peak_mb"] or 0, r["rss_outage_end_mb"] or 0,
                    "" if r["rss_bounded"] else " (still growing)", r["catch_up_s"],
                    r.get("error") or "all %s rows in Kafka" % "{:,}".format(r["rows"])) for r in runs),
                "met": all(r["rss_bounded"] and "error" not in r for r in runs)}
    return out


def _fmt(v, spec="%.0f"):
    return "-" if v is None else spec % v


def _cell(values, spec="%.0f"):
    """median (min-max) of a list, or the single value."""
    s = summary(values)
    if s is None:
        return "-"
    if s["n"] == 1:
        return spec % s["median"]
    return "%s (%s–%s)" % (spec % s["median"], spec % s["min"], spec % s["max"])


def foreign_load(results):
    """[(measurement, foreign cores)] of every measurement with a CPU breakdown."""
    out = []
    for shape, e in (results.get("catchup") or {}).items():
        for i, c in enumerate(e["ceiling"]):
            out.append(("catch-up %s pg_recvlogical #%d" % (shape, i + 1), c["cpu_use"]["foreign_cores"]))
        for mode, runs in e["relay"].items():
            for i, r in enumerate(runs):
                out.append(("catch-up %s %s #%d" % (shape, mode, i + 1), r["cpu_use"]["foreign_cores"]))
    for e in results.get("live") or []:
        for i, r in enumerate(e["runs"]):
            out.append(("live %s %s #%d" % (e["rate"], e["mode"], i + 1), r["cpu_use"]["foreign_cores"]))
    for i, r in enumerate(results.get("outage") or []):
        out.append(("outage %s" % r["mode"], r["cpu_use"]["foreign_cores"]))
    return out


def markdown(results):
    s = results["settings"]
    m = results.get("machine", {})
    v = results.get("versions", {})
    lines = []
    lines.append("Measured %s on %s CPUs (%s), %s GB RAM, %s; PostgreSQL %s, wal2json %s, Kafka %s (%s), "
                 "librdkafka %s, relay %s." % (
                     results.get("date", "?"), m.get("nproc"), m.get("cpu"), m.get("memory_gb"), m.get("os"),
                     v.get("postgresql"), v.get("wal2json"), v.get("kafka"), v.get("java"), v.get("librdkafka"),
                     v.get("relay_commit")))
    lines.append("Settings: BENCH_ROWS=%d BENCH_RUNS=%d BENCH_LIVE_SECONDS=%d BENCH_OUTAGE_SECONDS=%d "
                 "BENCH_RATES=%s BENCH_FORMATS=%s. Figures are the median of the runs, (min–max) when there are "
                 "several." % (s["rows"], s["runs"], s["live_seconds"], s["outage_seconds"], ",".join(s["rates"]),
                               ",".join(s.get("formats", ["json"]))))
    fl = foreign_load(results)
    if fl:
        worst = max(fl, key=lambda x: x[1])
        noisy = [name for name, c in fl if c > 0.1]
        lines.append("Other processes on the machine used %.2f cores at the median of the measurements, %.2f at most "
                     "(%s)%s" % (statistics.median(c for _, c in fl), worst[1], worst[0],
                                 "; disturbed (> 0.1 core): %s." % ", ".join(noisy) if noisy else "."))
    lines.append("")
    cu = results.get("catchup") or {}
    if cu:
        lines.append("**Catch-up** (backlog written before the relay starts; rows/s from process start until the "
                     "slot is confirmed at the backlog's end)")
        lines.append("")
        lines.append("| backlog | reader | rows/s | vs pg_recvlogical | seconds | start-up s | peak RSS MB | "
                     "CPU µs/row | walsender busy |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for shape in ("large", "small"):
            e = cu.get(shape)
            if not e:
                continue
            desc = "%s rows in %s transactions (+%s uncaptured rows, %.0f MB WAL)" % (
                "{:,}".format(e["rows"]), "{:,}".format(e["transactions"]), "{:,}".format(e["uncaptured_rows"]),
                e["wal_mb"])
            c = e["ceiling"]
            lines.append("| %s | pg_recvlogical (ceiling) | %s | 100%% | %s | - | - | - | %s |" % (
                desc, _cell([x["rows_per_s"] for x in c]), _cell([x["seconds"] for x in c], "%.1f"),
                _cell([walsender_busy(x) for x in c], "%.0f%%")))
            for mode, runs in e["relay"].items():
                if not runs:
                    continue
                lines.append("| | relay, %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    mode, _cell([x["rows_per_s"] for x in runs]),
                    _cell([100 * x["vs_ceiling"] for x in runs], "%.0f%%"),
                    _cell([x["seconds"] for x in runs], "%.1f"), _cell([x["startup_s"] for x in runs], "%.2f"),
                    _cell([x["peak_rss_mb"] for x in runs], "%.1f"),
                    _cell([x["cpu_us_per_row"] for x in runs], "%.2f"),
                    _cell([walsender_busy(x) for x in runs], "%.0f%%")))
        lines.append("")
    lines += variant_table(avro_pairs(results), "Avro",
                           "**JSON and Avro** (the same catch-ups side by side: the outbox source in format "
                           "\"avro\", a schema file for the event type, a real schema registry; Avro − JSON is the "
                           "relay's extra CPU per row, each Avro run against the JSON run right before it)")
    lines += variant_table(variant_pairs(results, "protected"), "protected",
                           "**JSON with protected fields** (the same catch-ups: `protect` rules of BENCH_PROTECT, "
                           "by default two fields hashed and one masked per row; protected − JSON is the relay's "
                           "extra CPU per row, each run against the JSON run right before it)")
    live = results.get("live") or []
    if live:
        lines.append("**Live latency** (one row per transaction; commit time to visible in a read_committed "
                     "consumer; first %.0f s not counted)" % LIVE_WARMUP_S)
        lines.append("")
        lines.append("| target rate | mode | achieved rows/s | p50 ms | p99 ms | max ms | behind at the end s | "
                     "consumer kept up | peak RSS MB | CPU µs/row | Kafka transactions/s |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for e in live:
            runs = e["runs"]
            if not runs:
                continue
            kept = all(r["consumer_kept_up"] for r in runs)
            reached = all(r["rate_reached"] for r in runs)
            lines.append("| %s | %s | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                e["rate"] if e["rate"] == "max" else "{:,}".format(int(e["rate"])), e["mode"],
                _cell([r["rows_per_s"] for r in runs]), "" if reached else " (short of the target)",
                _cell([r["p50_ms"] for r in runs], "%.1f"), _cell([r["p99_ms"] for r in runs], "%.1f"),
                _cell([r["max_ms"] for r in runs], "%.0f"),
                _cell([max(0.0, r["drain_s"] or 0.0) for r in runs], "%.1f"),
                "yes" if kept else "no (consumer CPU %s)" % _cell([100 * r["consumer_cpu_share"] for r in runs],
                                                                 "%.0f%%"),
                _cell([r["peak_rss_mb"] for r in runs], "%.1f"), _cell([r["cpu_us_per_row"] for r in runs], "%.2f"),
                _cell([r.get("kafka_transactions_per_s") for r in runs], "%.0f")))
        lines.append("")
    og = results.get("outage") or []
    if og:
        lines.append("**Kafka outage** (writers at %s rows/s; the broker stopped, started again after the outage)"
                     % "{:,}".format(og[0]["rate"]))
        lines.append("")
        lines.append("| mode | broker down s (unavailable s) | RSS before MB | RSS peak during outage MB | "
                     "RSS at end of outage MB | RSS peak after MB | catch-up s | rows written | records in Kafka | "
                     "relay exited |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in og:
            ex = r.get("relay_exits") or []
            lines.append("| %s | %.0f (%.0f) | %s | %s | %s | %s | %.1f | %s | %s | %s |" % (
                r["mode"], r["outage_s"], r["unavailable_s"], _fmt(r["rss_before_mb"], "%.1f"),
                _fmt(r["rss_outage_peak_mb"], "%.1f"),
                _fmt(r["rss_outage_end_mb"], "%.1f"), _fmt(r["rss_after_peak_mb"], "%.1f"), r["catch_up_s"],
                "{:,}".format(r["rows"]), "{:,}".format(r["records_in_kafka"]),
                "no" if not ex else "; ".join("exit %s at %.0f s%s" % (
                    x["code"], x["t"], ", restarted" if x.get("restarted") else "") for x in ex)))
        lines.append("")
        for r in og:
            for ex in r.get("relay_exits") or []:
                if ex.get("last_error"):
                    lines.append("The %s relay exited: `%s`" % (r["mode"], ex["last_error"].split(" error ", 1)[-1]))
                    lines.append("")
        for r in og:
            pts, next_t = [], 0.0
            for p in r["series"]:
                if p["t"] >= next_t:
                    pts.append("%.0f" % p["rss_mb"])
                    next_t += 5.0
            lines.append("RSS of the relay every 5 s, %s (MB; broker stopped at %.0f s, back at %.0f s): %s" % (
                r["mode"], r["marks"]["stop"], r["marks"]["up"], " ".join(pts)))
            lines.append("")
    tg = results.get("targets") or {}
    if tg:
        lines.append("**Targets**")
        lines.append("")
        lines.append("| target | measured | met |")
        lines.append("|---|---|---|")
        for key, text in TARGETS:
            if key in tg:
                lines.append("| %s | %s | %s |" % (text, tg[key]["measured"], "yes" if tg[key]["met"] else "**no**"))
        lines.append("")
    if results.get("error"):
        lines.append("**The run failed:** `%s`" % results["error"].splitlines()[0])
        lines.append("")
    return "\n".join(lines)


def write_outputs(s, results):
    os.makedirs(s.out_dir, exist_ok=True)
    results["targets"] = evaluate(results)
    tmp = os.path.join(s.out_dir, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, sort_keys=False)
    os.replace(tmp, os.path.join(s.out_dir, "results.json"))
    with open(os.path.join(s.out_dir, "results.md"), "w") as f:
        f.write(markdown(results) + "\n")


def update_docs(md):
    path = os.path.join(REPO, "docs", "performance.md")
    with open(path) as f:
        text = f.read()
    a, b = text.find(DOCS_BEGIN), text.find(DOCS_END)
    if a < 0 or b < a:
        log("docs/performance.md has no %s ... %s markers: not updated" % (DOCS_BEGIN, DOCS_END))
        return
    text = text[:a + len(DOCS_BEGIN)] + "\n" + md + "\n" + text[b:]
    with open(path, "w") as f:
        f.write(text)
    log("updated docs/performance.md")


def render(path):
    """`run.py --render results.json`: the tables and targets of a saved run again (with this file's
    targets), to stdout; BENCH_UPDATE_DOCS=1 copies them into docs/performance.md."""
    with open(path) as f:
        results = json.load(f)
    if results.get("error"):
        raise SystemExit("%s holds a failed run: %s" % (path, results["error"]))
    results["targets"] = evaluate(results)
    md = markdown(results)
    print(md)
    if _env_int("BENCH_UPDATE_DOCS", 0):
        update_docs(md)
    return 0


def main():
    if sys.argv[1:2] == ["--render"] and len(sys.argv) == 3:
        return render(sys.argv[2])
    s = Settings()
    if not os.access(s.relay_bin, os.X_OK):
        raise SystemExit("no relay binary at %s (make all)" % s.relay_bin)
    os.makedirs(os.path.join(s.out_dir, "logs"), exist_ok=True)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "settings": s.as_dict(), "machine": machine_info()}
    t_all = time.monotonic()
    pg = harness.Postgres()
    kafka = harness.Kafka()
    rc = 0
    try:
        log("starting PostgreSQL and Kafka")
        pg.start()
        tune_postgres(pg, s.runs * (1 + len(s.variants())))
        kafka.start()
        kafka.create_topic(CHECKPOINT_TOPIC, partitions=1, config={"cleanup.policy": "compact"})
        results["versions"] = versions(pg)
        bench = Bench(s, pg, kafka, results)
        bench.wait_quiet("start")
        if "catchup" in s.phases:
            bench.catchup()
        if "live" in s.phases:
            bench.live()
        if "outage" in s.phases:
            bench.outage()
        if s.perf:
            bench.profile()
    except (Exception, KeyboardInterrupt) as e:
        rc = note_failure(results, e)
    finally:
        results["total_s"] = time.monotonic() - t_all
        write_outputs(s, results)
        harness.cleanup_all()
    md = markdown(results)
    print(md)
    if s.update_docs and rc == 0:
        update_docs(md)
    log("done in %.0f s: %s, %s" % (results["total_s"], os.path.join(s.out_dir, "results.json"),
                                    os.path.join(s.out_dir, "results.md")))
    return rc


if __name__ == "__main__":
    sys.exit(main())
