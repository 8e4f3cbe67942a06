#!/usr/bin/env python3
# vs_debezium.py: `make bench-debezium`: the relay and Debezium (Kafka Connect, Outbox Event Router) side by side.
"""The relay and Debezium on the same PostgreSQL, broker and backlog, one after the other.

Catch-up: one backlog (BENCH_ROWS outbox rows in 10 transactions), read BENCH_RUNS times by the
relay (tests/bench/run.py's catch-up measurement) and by Debezium, in each delivery mode, each
run from slots of its own; after each run both outputs are read back (read_committed) and
compared event by event. Live: BENCH_RUNS runs per mode of the relay (run.py's live phase) and
Debezium at BENCH_DBZ_RATE rows/s, one row per transaction. Every run's figures are kept in
build/bench/debezium.json; build/bench/debezium.md shows the median (min–max) of the runs, as
run.py's tables do, and ratios of the medians. docs/performance.md explains them.

Environment knobs (defaults in brackets):
  BENCH_ROWS [1000000]           catch-up backlog, outbox rows (multiple of 10)
  BENCH_RUNS [3]                 runs of each catch-up and live measurement, per mode and tool
  BENCH_MODES [at-least-once,exactly-once]
  BENCH_DBZ_PHASES [catchup,live]
  BENCH_DBZ_RATE [1000]          live rate, rows/s
  BENCH_LIVE_SECONDS [20]        writing time of each live run
  BENCH_DBZ_WARMUP [15]          seconds of unreported live load before each Debezium live run
  BENCH_DBZ_COMPARE [1]          0: skip reading both outputs back (after every catch-up run)
  BENCH_OUT [build/bench], RELAY_BIN [relay/outbox-relay]
"""

import datetime
import json
import math
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import harness  # noqa: E402
import run as bench_run  # noqa: E402  (tests/bench/run.py: its Bench, measurements and helpers)
import connect  # noqa: E402
import compare_outputs  # noqa: E402

from run import log, lsn_text, mb, percentile, proc_cpu, proc_mem, BenchError  # noqa: E402

DEBEZIUM_VERSION = "3.6.1.Final"
CONNECT_VERSION = "3.9.1"
TARGET_THROUGHPUT = 5.0    # the relay's rows/s at least 5x Debezium's
TARGET_MEMORY = 1 / 100.0  # the relay's peak RSS at most 1/100 of Debezium's


class Settings(bench_run.Settings):
    """run.py's settings (JSON values only; BENCH_RUNS as run.py reads it) and this benchmark's own knobs."""

    def __init__(self):
        os.environ.setdefault("BENCH_MODES", "at-least-once,exactly-once")
        super().__init__()
        self.formats = ["json"]
        self.dbz_phases = bench_run._env_list("BENCH_DBZ_PHASES", "catchup,live")
        self.dbz_rate = bench_run._env_int("BENCH_DBZ_RATE", 1000)
        self.dbz_warmup = bench_run._env_int("BENCH_DBZ_WARMUP", 15)
        self.compare = bench_run._env_int("BENCH_DBZ_COMPARE", 1) != 0


class SideBySide(bench_run.Bench):
    """run.py's Bench, but the relay's topics are kept (for the comparison) until drop_kept()."""

    def __init__(self, *args):
        super().__init__(*args)
        self.kept = []

    def delete_topics(self, topics):
        self.kept.append(list(topics))

    def drop_kept(self):
        for topics in self.kept:
            super().delete_topics(topics)
        self.kept = []


# ---------------------------------------------------------------------------
# Debezium's configuration
# ---------------------------------------------------------------------------

def connector_config(pg, db, slot, publication, topic_prefix, exactly_once, timestamp_field=None):
    """The PostgreSQL connector with the Outbox Event Router, set to give the relay's records.

    docs/performance.md ("Debezium side by side") says why each setting is what it is."""
    cfg = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": pg.host, "database.port": str(pg.port),
        "database.user": "postgres", "database.password": "", "database.dbname": db.name,
        "topic.prefix": "dbz",
        "plugin.name": "pgoutput",
        "slot.name": slot,
        "publication.name": publication,
        "publication.autocreate.mode": "disabled",
        "snapshot.mode": "no_data",
        "table.include.list": "outbox.events",
        "tombstones.on.delete": "false",
        "extended.headers.enabled": "false",
        "poll.interval.ms": "10",
        "transforms": "outbox",
        "transforms.outbox.type": "io.debezium.transforms.outbox.EventRouter",
        "transforms.outbox.route.by.field": "aggregate_type",
        "transforms.outbox.route.topic.replacement": topic_prefix + ".${routedByValue}",
        "transforms.outbox.table.field.event.id": "id",
        "transforms.outbox.table.field.event.key": "aggregate_id",
        "transforms.outbox.table.field.event.payload": "payload",
        "transforms.outbox.table.expand.json.payload": "false",
        "transforms.outbox.table.fields.additional.placement": "id:header:event_id,event_type:header:event_type",
    }
    if timestamp_field:
        cfg["transforms.outbox.table.field.event.timestamp"] = timestamp_field
    if exactly_once:
        cfg["exactly.once.support"] = "required"
        cfg["transaction.boundary"] = "poll"
    return cfg


def debezium_source(db, tag):
    """A publication of the outbox table and a pgoutput slot for one connector; returns their names."""
    slot = "dbz_" + tag.replace("-", "_")
    pub = slot + "_pub"
    db.execute("CREATE PUBLICATION %s FOR TABLE outbox.events" % pub)
    db.query("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return slot, pub


class DebeziumRun:
    """One Connect worker and one connector, its topics, and the JVM's footprint."""

    def __init__(self, bench, tag, db, slot, pub, mode, timestamp_field=None):
        self.bench = bench
        self.tag = tag
        self.exactly_once = mode == "exactly-once"
        self.prefix = "dbz.%s.%s" % (tag, uuid.uuid4().hex[:6])
        self.topics = ["%s.%s" % (self.prefix, a) for a in bench_run.AGGREGATES]
        self.name = "outbox-" + tag
        self.config = connector_config(bench.pg, db, slot, pub, self.prefix, self.exactly_once, timestamp_field)
        self.worker = connect.ConnectWorker(bench.kafka.bootstrap, self.exactly_once,
                                            os.path.join(bench.s.out_dir, "logs", tag))
        self.t_created = None

    @property
    def pid(self):
        return self.worker.proc.pid

    def start_worker(self):
        for t in self.topics:
            self.bench.kafka.create_topic(t, partitions=3)
        log("%s: starting Kafka Connect (exactly-once source support %s)"
            % (self.tag, "enabled" if self.exactly_once else "disabled"))
        self.worker.start()
        return self

    def create_connector(self):
        self.t_created = time.monotonic()
        self.worker.create_connector(self.name, self.config)
        harness.wait_for(self.running, 120, interval=0.2, what="connector %s running" % self.name)

    def running(self):
        st = self.worker.task_state(self.name)
        if st and "FAILED" in st[:2]:
            raise BenchError("connector %s failed:\n%s" % (self.name, st[2]))
        return st is not None and st[0] == "RUNNING" and st[1] == "RUNNING"

    def cleanup(self, keep_topics=False):
        self.worker.delete_connector(self.name)
        self.worker.cleanup()
        if not keep_topics:
            bench_run.Bench.delete_topics(self.bench, self.topics)


# ---------------------------------------------------------------------------
# Catch-up
# ---------------------------------------------------------------------------

class OffsetWatch:
    """Records the committed records of some topics (the sum of their last stable offsets) over time."""

    def __init__(self, bootstrap, topics):
        from confluent_kafka import Consumer, TopicPartition
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watch-" + uuid.uuid4().hex,
                           "isolation.level": "read_committed", "log_level": 0, "error_cb": lambda e: None})
        md = self.c.list_topics(timeout=30)
        self.parts = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]

    def total(self):
        """Offsets up to the last stable offset, summed (transaction markers included)."""
        return sum(self.c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in self.parts)

    def close(self):
        self.c.close()


def wait_for_records(run, rows, timeout, settle=3.0):
    """Polls the offsets until at least rows are there and nothing more came for settle seconds.

    Returns (time of the first and of the last increase after run.t_created, the JVM's CPU seconds
    at the last increase)."""
    watch = OffsetWatch(run.bench.kafka.bootstrap, run.topics)
    last, t_first, t_last, cpu_last, t_checked = 0, None, None, None, 0.0
    try:
        while True:
            total, now = watch.total(), time.monotonic()
            if total > last:
                last, t_last, cpu_last = total, now, proc_cpu(run.pid)
                t_first = t_first or now
            if last >= rows and now - t_last >= settle:
                return t_first - run.t_created, t_last - run.t_created, cpu_last
            if now - run.t_created > timeout:
                raise BenchError("%s: %d of %d records after %.0f s" % (run.tag, last, rows, timeout))
            if now - t_checked >= 1.0:  # the task's state, once a second (a REST call)
                run.running()
                t_checked = now
            time.sleep(0.05)
    finally:
        watch.close()


def debezium_catchup(bench, db, slot, pub, mode, rows, tag):
    """Debezium reads the backlog from its slot: throughput, CPU per row, the JVM's peak RSS."""
    run = DebeziumRun(bench, tag, db, slot, pub, mode).start_worker()
    try:
        cpu0 = proc_cpu(run.pid)
        win = bench_run.CpuWindow(bench.pg, bench.kafka_pid, run.pid).start()  # the JVM counts as "relay"
        run.create_connector()
        first, last, cpu_last = wait_for_records(run, rows, timeout=max(900.0, rows / 200.0))
        cpu_use = win.stop()
        _, hwm = proc_mem(run.pid)
        # rows/s from the first record to the last: Debezium's start-up is left out (favours it)
        res = {"seconds": last - first, "first_record_s": first, "last_record_s": last,
               "rows_per_s": rows / (last - first), "rows_per_s_from_connector_creation": rows / last,
               "cpu_s": cpu_last - cpu0, "cpu_us_per_row": (cpu_last - cpu0) / rows * 1e6,
               "jvm_startup_cpu_s": cpu0, "peak_rss_mb": mb(hwm), "topics": run.topics, "prefix": run.prefix,
               "cpu_use": cpu_use}
        if bench.s.verify:
            res["records_in_kafka"] = bench_run.count_records(bench.kafka.bootstrap, run.topics, expected=rows)
        return res
    finally:
        run.cleanup(keep_topics=True)


def relay_catchup(bench, db, slot, mode, end_lsn, rows, tag):
    """run.py's catch-up measurement of the relay; its topics are kept for the comparison."""
    res = bench.relay_catchup(db, slot, mode, end_lsn, rows, tag)
    res["topics"] = bench.kept[-1]
    res["prefix"] = res["topics"][0].rsplit(".", 1)[0]
    return res


def compare_run(bench, relay, dbz):
    """Both outputs of one mode, event by event."""
    first = compare_outputs.Side("relay", relay["prefix"], relay["topics"], "event_id")
    second = compare_outputs.Side("debezium", dbz["prefix"], dbz["topics"], "event_id")
    t0 = time.monotonic()
    out = compare_outputs.compare(bench.kafka.bootstrap, first, second)
    out["seconds"] = time.monotonic() - t0
    return out


def catchup(bench, results):
    """One backlog, slots for every run made before it; per run and mode the relay, then Debezium,
    then the comparison of both outputs (runs interleave the modes, as run.py's do)."""
    s = bench.s
    db = bench.new_database("dbz_catchup")
    try:
        runs = [(r, m) for r in range(s.runs) for m in s.modes]
        slots = {k: bench.slot_name("relay", k[1], k[0]) for k in runs}
        for name in slots.values():
            db.query("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')", (name,))
        sources = {k: debezium_source(db, "catchup_%s_%d" % (k[1], k[0])) for k in runs}
        t0 = time.monotonic()
        end_lsn, payload = bench.write_backlog(db, "large", s.rows)
        log("backlog: %d rows in 10 transactions written in %.0f s (payload %.0f bytes), end %s"
            % (s.rows, time.monotonic() - t0, payload, lsn_text(end_lsn)))
        results["catchup"] = {"rows": s.rows, "transactions": 10, "payload_bytes": payload, "runs": s.runs,
                              "modes": {m: [] for m in s.modes}}
        for r, mode in runs:
            entry = catchup_mode(bench, db, slots[(r, mode)], sources[(r, mode)], end_lsn, mode, r)
            results["catchup"]["modes"][mode].append(entry)
            save(s, results)
    finally:
        bench.drop_kept()
        bench.drop_database(db)


def catchup_mode(bench, db, slot, source, end_lsn, mode, run):
    """One run of one mode: the relay, Debezium, and (BENCH_DBZ_COMPARE) the two outputs compared."""
    rows = bench.s.rows
    load = os.getloadavg()[0]
    relay = relay_catchup(bench, db, slot, mode, end_lsn, rows, "dbz-catchup-relay-%s-%d" % (mode, run))
    log("catch-up %s run %d: relay %.1f s, %.0f rows/s, peak RSS %.1f MB, %.2f us CPU/row"
        % (mode, run + 1, relay["seconds"], relay["rows_per_s"], relay["peak_rss_mb"], relay["cpu_us_per_row"]))
    dbz = debezium_catchup(bench, db, source[0], source[1], mode, rows, "dbz-catchup-debezium-%s-%d" % (mode, run))
    log("catch-up %s run %d: Debezium %.1f s, %.0f rows/s, peak RSS %.0f MB, %.1f us CPU/row"
        % (mode, run + 1, dbz["seconds"], dbz["rows_per_s"], dbz["peak_rss_mb"], dbz["cpu_us_per_row"]))
    entry = {"relay": relay, "debezium": dbz, "loadavg_1m_before": load, "loadavg_1m_after": os.getloadavg()[0]}
    if bench.s.compare:
        entry["comparison"] = compare_run(bench, relay, dbz)
        log("compare %s run %d: %s" % (mode, run + 1,
                                        {k: v for k, v in entry["comparison"].items() if k != "examples"}))
    bench.drop_kept()
    bench_run.Bench.delete_topics(bench, dbz["topics"])
    return entry


# ---------------------------------------------------------------------------
# Live latency
# ---------------------------------------------------------------------------

# Debezium's record timestamp for the live runs: the row's insert time (the Outbox Event Router takes
# a timestamp column of a logical time type: a timestamp without time zone, in UTC).
LIVE_TS_SQL = ("ALTER TABLE outbox.events ADD COLUMN IF NOT EXISTS bench_ts timestamp "
               "DEFAULT (clock_timestamp() AT TIME ZONE 'UTC')")


def live_load(bench, db, topics, rate, seconds, pid, already=0):
    """Writers at rate rows/s for seconds, and the latency consumer on topics (run.py's own).

    already: records in topics before (a warm-up's): the consumer reads from the beginning, counts
    them too and stops at written + already; "received" is net of them."""
    load = bench_run.LiveLoad(bench.kafka.bootstrap, topics, bench.s.fetch_wait_ms, db.dsn,
                              max(1, int(math.ceil(rate / 2500.0))), rate)
    try:
        load.start(seconds)
        cpu0 = proc_cpu(pid)
        writers = load.writers()
        cpu = proc_cpu(pid) - cpu0
        written = sum(w["rows"] for w in writers)
        cres = load.consumer(written + already)
        return {"rows": written, "rows_per_s": written / max(w["seconds"] for w in writers),
                **bench_run.latency_figures(cres, load.t_start, load.t_end, already), "cpu_s": cpu,
                "cpu_us_per_row": cpu / written * 1e6 if written else None}
    finally:
        load.stop()


def debezium_live(bench, db, mode, run_no):
    """Debezium at BENCH_DBZ_RATE rows/s after an unreported warm-up at that rate (a worker per run)."""
    s = bench.s
    slot, pub = debezium_source(db, "live_%s_%d" % (mode, run_no))
    run = DebeziumRun(bench, "dbz-live-debezium-%s-%d" % (mode, run_no), db, slot, pub, mode,
                      "bench_ts").start_worker()
    try:
        run.create_connector()
        warm = live_load(bench, db, run.topics, s.dbz_rate, s.dbz_warmup, run.pid) if s.dbz_warmup else None
        run.running()
        res = live_load(bench, db, run.topics, s.dbz_rate, s.live_seconds, run.pid,
                        already=warm["rows"] if warm else 0)
        run.running()
        if warm:
            res["warmup"] = {k: warm[k] for k in ("rows", "received", "drain_s", "p50_ms", "max_ms")}
        res["peak_rss_mb"] = mb(proc_mem(run.pid)[1])
        return res
    finally:
        run.cleanup()
        bench.drop_slot(db, slot)


def live(bench, results):
    """Per run and mode: the relay (run.py's live run, after its warm-up), then Debezium."""
    s = bench.s
    db = bench.new_database("dbz_live")
    db.execute(LIVE_TS_SQL)
    results["live"] = {"rate": s.dbz_rate, "seconds": s.live_seconds, "runs": s.runs,
                       "modes": {m: [] for m in s.modes}}
    try:
        for r in range(s.runs):
            for mode in s.modes:
                load = os.getloadavg()[0]
                bench.live_run(db, mode, str(s.dbz_rate), "warmup-%d" % r, seconds=max(5, s.dbz_warmup))
                relay = bench.live_run(db, mode, str(s.dbz_rate), r)
                log("live %s run %d: relay p99 %.1f ms, %.0f us CPU/row"
                    % (mode, r + 1, relay["p99_ms"], relay["cpu_us_per_row"]))
                dbz = debezium_live(bench, db, mode, r)
                log("live %s run %d: Debezium p99 %.1f ms, %.0f us CPU/row"
                    % (mode, r + 1, dbz["p99_ms"], dbz["cpu_us_per_row"]))
                results["live"]["modes"][mode].append({"relay": relay, "debezium": dbz, "loadavg_1m_before": load,
                                                       "loadavg_1m_after": os.getloadavg()[0]})
                save(s, results)
    finally:
        bench.drop_kept()
        bench.drop_database(db)


# ---------------------------------------------------------------------------
# Ratios, targets, output
# ---------------------------------------------------------------------------

def median(entries, tool, key):
    """The median of one figure over the runs of a tool (run.py's summary), or None."""
    s = bench_run.summary([e[tool].get(key) for e in entries])
    return s and s["median"]


def _ratio(a, b):
    return a / b if a is not None and b else None


def ratios(results):
    """relay/Debezium per mode from the medians of the runs, and whether the targets of issue #16 are met."""
    out = {}
    for mode, runs in (results.get("catchup") or {}).get("modes", {}).items():
        m = {k: (median(runs, "relay", k), median(runs, "debezium", k))
             for k in ("rows_per_s", "peak_rss_mb", "cpu_us_per_row")}
        out[mode] = {"throughput": _ratio(*m["rows_per_s"]), "peak_rss": _ratio(*m["peak_rss_mb"]),
                     "cpu_per_row": _ratio(*m["cpu_us_per_row"])}
        out[mode]["throughput_target_met"] = (out[mode]["throughput"] or 0) >= TARGET_THROUGHPUT
        out[mode]["memory_target_met"] = out[mode]["peak_rss"] is not None and out[mode]["peak_rss"] <= TARGET_MEMORY
    for mode, runs in (results.get("live") or {}).get("modes", {}).items():
        out.setdefault(mode, {})["live_p99"] = _ratio(median(runs, "relay", "p99_ms"),
                                                      median(runs, "debezium", "p99_ms"))
        out[mode]["live_cpu_per_row"] = _ratio(median(runs, "relay", "cpu_us_per_row"),
                                               median(runs, "debezium", "cpu_us_per_row"))
    return out


def _f(v, spec):
    return "—" if v is None else spec % v


def _cell_of(values, spec):
    """median (min–max) of values (run.py's cell), "—" without a value."""
    c = bench_run._cell(values, spec)
    return "—" if c == "-" else c


def _cell(runs, tool, key, spec):
    """One figure of a tool over the runs, as _cell_of."""
    return _cell_of([e[tool].get(key) for e in runs], spec)


def _load(runs):
    """The 1-minute load average over the runs: the lowest before one, the highest after one."""
    return "%.1f–%.1f" % (min(e["loadavg_1m_before"] for e in runs), max(e["loadavg_1m_after"] for e in runs))


def markdown(results):
    runs = (results.get("settings") or {}).get("runs", 1)
    lines = ["## Debezium side by side (%s)" % results.get("date", ""), "",
             "Debezium %s on Kafka Connect %s (distributed worker), the relay at %s; %d run%s per mode and tool: "
             "each figure is the median of the runs (min–max when there are several), each ratio the ratio "
             "of the medians. Load average (1 min) next to each figure, the lowest before a run to the highest "
             "after one: the machine is shared, the figures are noisy." % (
                 DEBEZIUM_VERSION, CONNECT_VERSION, results.get("relay_commit", "?"), runs,
                 "" if runs == 1 else "s"), ""]
    lines += _catchup_table(results) + _live_table(results) + _compare_lines(results)
    if results.get("error"):
        lines += ["", "**The run failed:** `%s`" % results["error"]]
    return "\n".join(lines) + "\n"


def _catchup_table(results):
    c = results.get("catchup")
    if not c or not any(c["modes"].values()):
        return []
    lines = ["Catch-up of %d outbox rows in %d transactions:" % (c["rows"], c["transactions"]), "",
             "| mode | tool | rows/s | peak RSS | CPU per row | load avg | other processes, cores |",
             "|---|---|---|---|---|---|---|"]
    rat = ratios(results)
    for mode, runs in c["modes"].items():
        if not runs:
            continue
        for tool in ("relay", "debezium"):
            foreign = [(e[tool].get("cpu_use") or {}).get("foreign_cores") for e in runs]
            lines.append("| %s | %s | %s | %s MB | %s µs | %s | %s |" % (
                mode, tool, _cell(runs, tool, "rows_per_s", "%.0f"), _cell(runs, tool, "peak_rss_mb", "%.1f"),
                _cell(runs, tool, "cpu_us_per_row", "%.1f"), _load(runs), _cell_of(foreign, "%.2f")))
        x = rat[mode]
        lines.append("| %s | **relay/Debezium** | **%s** (target ≥ 5x: %s) | **%s** (target ≤ 1/100: %s) "
                     "| %s | | |" % (mode, _f(x["throughput"], "%.1fx"), "met" if x["throughput_target_met"] else "NOT met",
                                     _f(x["peak_rss"] and 1 / x["peak_rss"], "1/%.0f"),
                                     "met" if x["memory_target_met"] else "NOT met", _f(x["cpu_per_row"], "%.2f")))
    return lines + [""]


def _live_table(results):
    lv = results.get("live")
    if not lv or not any(lv["modes"].values()):
        return []
    lines = ["Live, %d rows/s, one row per transaction, %d s:" % (lv["rate"], lv["seconds"]), "",
             "| mode | tool | rows/s written | received (all runs) | p50 | p99 | max | behind at the end | "
             "CPU per row | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, runs in lv["modes"].items():
        if not runs:
            continue
        for tool in ("relay", "debezium"):
            lines.append("| %s | %s | %s | %d of %d | %s ms | %s ms | %s ms | %s s | %s µs | %s |" % (
                mode, tool, _cell(runs, tool, "rows_per_s", "%.0f"), sum(e[tool]["received"] for e in runs),
                sum(e[tool]["rows"] for e in runs), _cell(runs, tool, "p50_ms", "%.1f"),
                _cell(runs, tool, "p99_ms", "%.1f"), _cell(runs, tool, "max_ms", "%.1f"),
                _cell_of([_behind(e[tool]) for e in runs], "%.1f"),
                _cell(runs, tool, "cpu_us_per_row", "%.0f"), _load(runs)))
        x = ratios(results).get(mode, {})
        lines.append("| %s | **relay/Debezium** | | | | **%s** | | | **%s** | |" % (
            mode, _f(x.get("live_p99"), "%.2f"), _f(x.get("live_cpu_per_row"), "%.2f")))
    lines += ["", "behind at the end: when the last record reached the consumer, seconds after the writers "
              "stopped (what a tool still had to deliver)."]
    for mode, runs in lv["modes"].items():
        for i, e in enumerate(runs):
            w = e["debezium"].get("warmup")
            if w:
                lines.append("Debezium's %s warm-up of run %d (not measured): %d of %d records, the last %s s "
                             "after its writers stopped, p50 %s ms%s." % (
                                 mode, i + 1, w["received"], w["rows"], _f(_behind(w), "%.1f"),
                                 _f(w["p50_ms"], "%.1f"), "" if w["received"] >= w["rows"] else
                                 ": NOT all delivered, the measured run started behind it"))
    return lines + [""]


def _behind(r):
    """Seconds from the writers' stop to the last record (0 if it came before)."""
    return None if r.get("drain_s") is None else max(0.0, r["drain_s"])


def _compare_lines(results):
    lines = []
    for mode, runs in ((results.get("catchup") or {}).get("modes") or {}).items():
        for i, e in enumerate(runs):
            cmp_ = e.get("comparison")
            if not cmp_:
                continue
            lines.append("- %s, run %d: %s events from the relay, %s from Debezium; %s missing in Debezium's "
                         "output, %s only in it, %s with another topic, partition or key, %s values differ as "
                         "JSON (%s differ in their bytes): **%s**. Headers: relay %s, Debezium %s." % (
                             mode, i + 1, cmp_["events"]["relay"], cmp_["events"]["debezium"],
                             cmp_["missing_in_debezium"], cmp_["only_in_debezium"], cmp_["route_differs"],
                             cmp_["value_json_differs"], cmp_["value_bytes_differ"],
                             "the same" if cmp_["same"] else "NOT the same", cmp_["headers"]["relay"],
                             cmp_["headers"]["debezium"]))
    return (["Same topic, partition, key and value for every event, after every catch-up run "
             "(read_committed, keyed by event id):", ""] + lines) if lines else []


def save(s, results):
    os.makedirs(s.out_dir, exist_ok=True)
    with open(os.path.join(s.out_dir, "debezium.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(s.out_dir, "debezium.md"), "w") as f:
        f.write(markdown(results))


def main():
    s = Settings()
    if not os.access(s.relay_bin, os.X_OK):
        raise SystemExit("no relay binary at %s (make all)" % s.relay_bin)
    connect.ensure_jars()
    os.makedirs(os.path.join(s.out_dir, "logs"), exist_ok=True)
    results = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "settings": s.as_dict(), "machine": bench_run.machine_info(),
               "relay_commit": os.environ.get("BENCH_RELAY_COMMIT") or _commit()}
    pg, kafka = harness.Postgres(), harness.Kafka()
    rc = 0
    try:
        log("starting PostgreSQL and Kafka")
        pg.start()
        bench_run.tune_postgres(pg, 2 * s.runs * len(s.modes))  # the catch-up's slots: 2 per run and mode
        kafka.start()
        kafka.create_topic(bench_run.CHECKPOINT_TOPIC, partitions=1, config={"cleanup.policy": "compact"})
        bench = SideBySide(s, pg, kafka, {"catchup": {}})
        if "catchup" in s.dbz_phases:
            catchup(bench, results)
        if "live" in s.dbz_phases:
            live(bench, results)
        results["ratios"] = ratios(results)
    except (Exception, KeyboardInterrupt) as e:
        rc = bench_run.note_failure(results, e)
    finally:
        save(s, results)
        harness.cleanup_all()
    print(markdown(results))
    return rc


def _commit():
    import subprocess
    p = subprocess.run(["git", "-C", bench_run.REPO, "describe", "--always", "--dirty"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return p.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
