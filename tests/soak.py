# soak.py: make soak: the relay under constant load and periodic faults for an hour; RSS over time, rows lost or duplicated.
"""Soak run (opt-in; `make soak`).

Starts a private PostgreSQL and Kafka (tests/harness.py), one exactly-once relay, writer threads
committing outbox transactions (some rolled back) at a steady rate, and every SOAK_FAULT_EVERY
seconds one fault in turn: a PostgreSQL restart, a broker stop and start, a kill -9 of the relay
(restarted at once). The relay's RSS is sampled every SOAK_SAMPLE_SECONDS. At the end every
committed row must be in Kafka exactly once (per key in commit order), and no rolled-back row.

Environment: SOAK_SECONDS (3600), SOAK_ROWS_PER_SEC (100), SOAK_FAULT_EVERY (90),
SOAK_SAMPLE_SECONDS (5), SOAK_OUT (build/soak). Writes SOAK_OUT/soak.json (settings, faults,
counts, RSS summary and samples) and SOAK_OUT/summary.md; exits 1 when a row was lost or
duplicated, a rolled-back row was published, the slot passed the checkpoint, or RSS grew.
"""
import json
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import relayctl  # noqa: E402
from events import slot_lsns  # noqa: E402
from test_exactly_once import Writers, checkpoint_lsn, transactional_id, writers_all  # noqa: E402

SECONDS = int(os.environ.get("SOAK_SECONDS", "3600"))
ROWS_PER_SEC = float(os.environ.get("SOAK_ROWS_PER_SEC", "100"))
FAULT_EVERY = int(os.environ.get("SOAK_FAULT_EVERY", "90"))
SAMPLE_SECONDS = float(os.environ.get("SOAK_SAMPLE_SECONDS", "5"))
OUT = os.environ.get("SOAK_OUT", os.path.join(harness.REPO_ROOT, "build", "soak"))
WRITERS = 3
MAX_ROWS = 8  # rows per transaction: 1..8, 4.5 on average
# A kill -9 every fifth fault, so that each relay process lives long enough (7.5 min with the
# default interval) for its own RSS trend to show a leak.
FAULTS = ["postgres_restart", "broker_restart", "postgres_restart", "broker_restart", "relay_kill_9"]
BROKER_OUTAGE_S = 5  # how long the broker stays down in a broker_restart fault


def log(msg):
    print("%s soak: %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class SteadyWriters(Writers):
    """test_exactly_once.Writers at a steady rate, surviving server restarts: a writer reconnects
    after an error. A commit that failed may still have happened (the connection died during
    COMMIT): the database's table is the truth for what committed (writers_all)."""

    def __init__(self, db, outbox, pause):
        super().__init__(db, outbox, count=WRITERS, max_rows=MAX_ROWS)
        self.pause = pause
        self.reconnects = 0

    def _run(self, w, max_rows):
        rnd = random.Random(w)
        seq = 0
        while not self.stop_flag.is_set():
            conn = None
            try:
                conn = self.db.connect(autocommit=False)
                while not self.stop_flag.is_set():
                    seq = self.write_transaction(conn, rnd, w, max_rows, seq)
                    self.stop_flag.wait(self.pause)
            except Exception:  # the server restarted: connect again
                with self.lock:
                    self.reconnects += 1
                self.stop_flag.wait(0.5)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass


class RssSampler(threading.Thread):
    """Samples the current relay process's VmRSS every SAMPLE_SECONDS: (seconds, pid, kB)."""

    def __init__(self, relay, t0):
        super().__init__(daemon=True)
        self.relay, self.t0 = relay, t0
        self.samples = []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.wait(SAMPLE_SECONDS):
            proc = self.relay.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                with open("/proc/%d/status" % proc.pid) as f:
                    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            except (OSError, StopIteration):
                continue
            self.samples.append((round(time.monotonic() - self.t0, 1), proc.pid, rss))


def avg(values):
    return round(sum(values) / len(values), 1) if values else None


def slope_per_min(points):
    """Least-squares slope of (seconds, kB) points, in kB per minute (None for fewer than 2)."""
    if len(points) < 2:
        return None
    n = float(len(points))
    mt = sum(t for t, _ in points) / n
    mk = sum(k for _, k in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return round(60.0 * sum((t - mt) * (k - mk) for t, k in points) / var, 1) if var else None


def rss_summary(samples, duration):
    """First and last window averages (window: 10 min, or a third of a shorter run), the max,
    per-process figures, and whether the RSS grew. Samples in the first 60 s of each relay
    process (start-up: buffers filling) are left out of the trend."""
    window = min(600.0, duration / 3.0)
    starts = {}
    for t, pid, _ in samples:
        starts.setdefault(pid, t)
    steady = [(t, pid, kb) for t, pid, kb in samples if t - starts[pid] >= 60]
    first = [kb for t, _, kb in steady if t <= window]
    last = [kb for t, _, kb in steady if t >= duration - window]
    per_pid = []
    for pid, t0 in starts.items():
        mine = [(t, kb) for t, p, kb in steady if p == pid]
        if mine:
            per_pid.append({"pid": pid, "started_s": t0, "seconds": round(mine[-1][0] - t0, 1),
                            "rss_kb_first": mine[0][1], "rss_kb_last": mine[-1][1],
                            "rss_kb_max": max(kb for _, kb in mine),
                            "slope_kb_per_min": slope_per_min(mine)})
    first_avg, last_avg = avg(first), avg(last)
    # Growth: the last window above the first by more than 20 % and 5 MiB, or a process with 5
    # minutes of samples after its first minute that ended 20 % and 5 MiB above where it began.
    grew = bool(first_avg and last_avg and last_avg > first_avg * 1.2 and last_avg - first_avg > 5120)
    for p in per_pid:
        if p["seconds"] >= 360 and p["rss_kb_last"] > p["rss_kb_first"] * 1.2 and \
                p["rss_kb_last"] - p["rss_kb_first"] > 5120:
            grew = True
    minutes = {}
    for t, _, kb in samples:
        minutes.setdefault(int(t // 60), []).append(kb)
    return {
        "window_s": window,
        "first_window_avg_kb": first_avg,
        "last_window_avg_kb": last_avg,
        "max_kb": max((kb for _, _, kb in samples), default=None),
        "per_minute_avg_kb": {m: avg(v) for m, v in sorted(minutes.items())},
        "per_process": per_pid,
        "growth": grew,
    }


def count_records(kafka, outbox, expected, rolled_back, timeout=600):
    """Lost, duplicated, out-of-order and never-committed records of the user topic."""
    topic = outbox.topic("user")
    msgs = kafka.consume([topic], until=len(expected), timeout=timeout)
    if len(msgs) >= len(expected):
        msgs = kafka.consume([topic], timeout=120)  # to the end: duplicates come after
    seen, last = set(), {}
    dups = phantom = disorder = 0
    for m in msgs:
        eid = dict(m["headers"])["event_id"].decode()
        if eid not in expected:
            phantom += 1  # rolled back, or a commit that failed
            continue
        if eid in seen:
            dups += 1
            continue
        seen.add(eid)
        key, s = expected[eid]
        if last.get(key, -1) > s:
            disorder += 1
        last[key] = s
    return {"records_read": len(msgs), "committed_rows": len(expected),
            "rolled_back_rows": len(rolled_back), "lost": len(set(expected) - seen),
            "duplicates": dups, "not_committed_but_published": phantom, "out_of_order": disorder}


class Soak:
    def __init__(self):
        self.pg = harness.Postgres()
        self.kafka = harness.Kafka()
        self.faults = []
        self.problems = []

    def setup(self):
        os.makedirs(OUT, exist_ok=True)
        self.pg.start()
        self.kafka.start()
        db = self.pg.create_database("soak")
        relayctl.install_outbox(db)
        o = type("SoakOutbox", (), {})()
        o.db, o.slot, o.prefix = db, "relay_soak", "soak"
        o.topic = lambda a: "%s.%s" % (o.prefix, a)
        o.config_path = os.path.join(OUT, "relay.conf")
        relayctl.write_config(o.config_path, db.dsn, self.kafka.bootstrap, o.slot, o.prefix + ".${aggregate_type}")
        with open(o.config_path) as f:
            text = f.read().replace('log_level = "debug";', 'log_level = "info";')
        with open(o.config_path, "w") as f:
            f.write(text)
        log_path = os.path.join(OUT, "relay.log")
        if os.path.exists(log_path):
            os.unlink(log_path)
        o.relay = relayctl.Relay(o.config_path, OUT)
        self.o = o

    def ensure_relay(self, what):
        """After a fault the relay must still run (a kill -9 is followed by a start)."""
        if self.o.relay.proc.poll() is not None:
            self.problems.append("relay exited with %s after %s" % (self.o.relay.proc.returncode, what))
            log(self.problems[-1])
            self.o.relay.start()
        self.o.relay.wait_streaming(180)

    def fault(self, kind, t):
        log("fault %s" % kind)
        t0 = time.monotonic()
        o = self.o
        if kind == "postgres_restart":
            self.pg.restart("fast")
        elif kind == "broker_restart":
            self.kafka.stop()
            time.sleep(BROKER_OUTAGE_S)  # the outage itself: the relay waits, then reads on
            self.kafka.start()
        elif kind == "relay_kill_9":
            o.relay.proc.send_signal(signal.SIGKILL)
            o.relay.wait_exit(30)
            o.relay.start()
            o.relay.wait_streaming(180)
            confirmed, _ = slot_lsns(o.db, o.slot)
            cp, _ = checkpoint_lsn(self.kafka, self.txn_id, o)
            if confirmed > max(cp, self.created_at):
                self.problems.append("slot at %x passed the checkpoint %x after a kill" % (confirmed, cp))
                log(self.problems[-1])
        self.ensure_relay(kind)
        self.faults.append({"at_s": round(t, 1), "kind": kind, "took_s": round(time.monotonic() - t0, 1)})

    def run(self):
        o = self.o
        o.relay.start()
        o.relay.wait_streaming(120)
        self.txn_id = transactional_id(o)
        self.created_at, _ = slot_lsns(o.db, o.slot)
        t0 = time.monotonic()
        sampler = RssSampler(o.relay, t0)
        sampler.start()
        pause = WRITERS * (1 + MAX_ROWS) / 2.0 / ROWS_PER_SEC
        writers = SteadyWriters(o.db, o, pause).start()
        log("running %d s: %.0f rows/s, a fault every %d s, RSS every %.0f s"
            % (SECONDS, ROWS_PER_SEC, FAULT_EVERY, SAMPLE_SECONDS))
        n = 0
        try:
            while True:
                next_fault = t0 + FAULT_EVERY * (n + 1)
                end = t0 + SECONDS
                time.sleep(max(0.0, min(next_fault, end) - time.monotonic()))
                if time.monotonic() >= end:
                    break
                self.fault(FAULTS[n % len(FAULTS)], time.monotonic() - t0)
                n += 1
        finally:
            writers.stop()
            sampler.stop_flag.set()
            sampler.join()
        duration = time.monotonic() - t0
        self.ensure_relay("the run")
        log("writers stopped (%d committed, %d rolled back, %d reconnects); counting records"
            % (len(writers.committed), len(writers.rolled_back), writers.reconnects))
        truth = writers_all(o)  # what the table holds: also commits whose reply was lost
        never = (writers.rolled_back | set(writers.committed)) - set(truth.committed)
        counts = count_records(self.kafka, o, truth.committed, never)
        code = o.relay.stop()
        if code != 0:
            self.problems.append("relay exit code %s at the end" % code)
        rss = rss_summary(sampler.samples, duration)
        return self.report(duration, counts, rss, sampler.samples, writers)

    def report(self, duration, counts, rss, samples, writers):
        failed = bool(self.problems or rss["growth"] or counts["lost"] or counts["duplicates"] or
                      counts["not_committed_but_published"] or counts["out_of_order"])
        result = {
            "settings": {"seconds": SECONDS, "rows_per_sec": ROWS_PER_SEC, "fault_every_s": FAULT_EVERY,
                         "sample_s": SAMPLE_SECONDS, "writers": WRITERS, "delivery": "exactly-once"},
            "duration_s": round(duration, 1),
            "faults": self.faults,
            "writer_reconnects": writers.reconnects,
            "counts": counts,
            "rss": rss,
            "problems": self.problems,
            "passed": not failed,
            "samples": samples,
        }
        with open(os.path.join(OUT, "soak.json"), "w") as f:
            json.dump(result, f, indent=1)
        mib = lambda kb: "%.1f MiB" % (kb / 1024.0) if kb is not None else "-"  # noqa: E731
        kinds = {k: sum(1 for f in self.faults if f["kind"] == k) for k in FAULTS}
        lines = [
            "# Soak run: %s" % ("passed" if not failed else "FAILED"),
            "",
            "%.0f s, %.0f rows/s from %d writers (10 %% of transactions rolled back), exactly-once; "
            "faults: %s." % (duration, ROWS_PER_SEC, WRITERS, ", ".join("%d %s" % (v, k) for k, v in kinds.items())),
            "",
            "| rows | count |", "|---|---|",
        ] + ["| %s | %s |" % (k.replace("_", " "), v) for k, v in counts.items()] + [
            "",
            "Relay RSS (VmRSS every %.0f s; the first minute of each relay process left out of the "
            "windows): first %.0f s %s, last %.0f s %s, max %s; growth: %s." % (
                SAMPLE_SECONDS, rss["window_s"], mib(rss["first_window_avg_kb"]), rss["window_s"],
                mib(rss["last_window_avg_kb"]), mib(rss["max_kb"]), "yes" if rss["growth"] else "no"),
            "",
            "| minute | RSS avg |", "|---|---|",
        ] + ["| %s | %s |" % (m, mib(kb)) for m, kb in rss["per_minute_avg_kb"].items()] + [
            "",
            "Relay processes (after their first minute): " + "; ".join(
                "pid %d %ds %s -> %s (max %s, trend %s KiB/min)" % (
                    p["pid"], p["seconds"], mib(p["rss_kb_first"]), mib(p["rss_kb_last"]),
                    mib(p["rss_kb_max"]), p["slope_kb_per_min"])
                for p in rss["per_process"]) + ".",
        ]
        if self.problems:
            lines += ["", "Problems:", ""] + ["- " + p for p in self.problems]
        with open(os.path.join(OUT, "summary.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0 if not failed else 1

    def cleanup(self):
        try:
            if getattr(self, "o", None) is not None:
                self.o.relay.kill()
        finally:
            self.kafka.cleanup()
            self.pg.cleanup()


def main():
    soak = Soak()
    try:
        soak.setup()
        return soak.run()
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
