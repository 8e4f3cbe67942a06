#!/usr/bin/env python3
# txn_cycles.py: where the time of the relay's Kafka transactions goes, from a relay log written with
# relay.log_level = "debug" and kafka.debug = "eos" (see docs/performance.md).
"""Usage: txn_cycles.py RELAY_LOG

Run a live measurement with librdkafka's transaction debugging, for example

    BENCH_PHASES=live BENCH_RATES=1000 BENCH_RUNS=1 BENCH_MODES=exactly-once \\
    BENCH_RELAY_CONF='log_level = "debug";' BENCH_KAFKA_CONF='debug = "eos";' make bench
    tests/bench/txn_cycles.py build/bench/logs/live-1000-exactly-once-0/relay.log

and this prints, per Kafka transaction (begin_transaction to a successful commit_transaction):
the whole cycle, the time until its partitions were registered (AddPartitionsToTxn, retried while
the broker still completes the previous transaction: CONCURRENT_TRANSACTIONS), and EndTxn.
"""
import datetime
import statistics
import sys


def stamp(line):
    return datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()


def cycles(lines):
    out, cur = [], None
    for line in lines:
        if not line[:4].isdigit():
            continue
        if "begin_transaction return" in line:
            cur = {"begin": stamp(line), "retries": 0}
        elif cur is None:
            continue
        elif "concurrent operation" in line or "CONCURRENT_TRANSACTIONS" in line:
            cur["retries"] += 1
        elif "registered with transaction" in line and "registered" not in cur:
            cur["registered"] = stamp(line)
        elif "-> CommittingTransaction" in line:
            cur["endtxn_sent"] = stamp(line)
        elif "EndTxn returned" in line:
            cur["endtxn_done"] = stamp(line)
        elif "commit_transaction return at" in line and "Success" in line:
            cur["done"] = stamp(line)
            if all(k in cur for k in ("registered", "endtxn_sent", "endtxn_done")):
                out.append(cur)
            cur = None
    return out


def describe(values):
    values = sorted(values)
    return "median %6.1f  p90 %6.1f  max %6.1f" % (
        statistics.median(values), values[int(0.9 * (len(values) - 1))], values[-1])


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], errors="replace") as f:
        cs = cycles(f.read().splitlines())
    if not cs:
        print("no complete transaction cycles found (debug logging on?)", file=sys.stderr)
        return 1
    print("%d Kafka transactions" % len(cs))
    print("cycle, begin to committed  ms: " + describe([(c["done"] - c["begin"]) * 1000 for c in cs]))
    print("partitions registered      ms: " + describe([(c["registered"] - c["begin"]) * 1000 for c in cs]))
    print("EndTxn round trip          ms: " + describe([(c["endtxn_done"] - c["endtxn_sent"]) * 1000 for c in cs]))
    retried = [c for c in cs if c["retries"]]
    print("AddPartitionsToTxn retried (CONCURRENT_TRANSACTIONS) in %d%% of them, %.1f times on average"
          % (100 * len(retried) / len(cs), statistics.mean(c["retries"] for c in cs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
