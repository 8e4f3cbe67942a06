# Metrics and health checks over HTTP (relay.metrics_listen): /metrics, /healthz, /readyz.
import http.client
import re
import socket

import pytest

import harness
from harness import wait_for
import relayctl

from events import consume_events, write_events


# ---------------------------------------------------------------------------
# A small reader of the Prometheus text format (0.0.4)
# ---------------------------------------------------------------------------

SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')


def parse_labels(text):
    """'a="x",b="y\\"z"' -> (("a", "x"), ("b", 'y"z')), sorted by name."""
    labels, i = [], 0
    while i < len(text):
        m = LABEL.match(text, i)
        assert m, "bad labels: %r" % text
        i = m.end()
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                i += 1
                value.append("\n" if text[i] == "n" else text[i])
            else:
                value.append(text[i])
            i += 1
        i += 1
        labels.append((m.group(1), "".join(value)))
        if i < len(text):
            assert text[i] == ",", "bad labels: %r" % text
            i += 1
    return tuple(sorted(labels))


class Metrics:
    """One scrape: samples by (name, labels), and each family's TYPE and HELP."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        self.types = {}
        self.helps = {}
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(None, 3)
                assert len(parts) == 4 and parts[1] in ("HELP", "TYPE"), "bad comment: %r" % line
                (self.types if parts[1] == "TYPE" else self.helps)[parts[2]] = parts[3]
                continue
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            name, labels, value = m.groups()
            key = (name, parse_labels(labels or ""))
            assert key not in self.samples, "duplicate sample %r" % (key,)
            self.samples[key] = float(value)

    def get(self, name, **labels):
        """The sample's value, or None when absent."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def by_label(self, name, label):
        """{label value: sample value} over the samples of one name."""
        return {dict(k[1])[label]: v for k, v in self.samples.items() if k[0] == name}


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path; no proxies involved."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.read().decode(), res.getheader("Content-Type")
    finally:
        conn.close()


def scrape(port):
    status, body, ctype = http_get(port, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain; version=0.0.4")
    return Metrics(body)


def status_of(port, path):
    try:
        return http_get(port, path)[0]
    except OSError:
        return None


P = "outbox_relay_"
FAMILIES = {
    "up": "gauge", "ready": "gauge", "rows_read_total": "counter",
    "records_published_total": "counter", "bytes_published_total": "counter",
    "dead_letters_total": "counter", "kafka_transactions_committed_total": "counter",
    "kafka_transactions_aborted_total": "counter", "delivery_latency_seconds": "histogram",
    "replication_lag_bytes": "gauge", "replication_lag_seconds": "gauge",
    "confirmed_lsn": "gauge", "reconnects_total": "counter",
    "commit_time_disorder_seconds": "gauge", "backfilled_rows_total": "counter",
    "capture_refused_tables": "gauge", "phantom_transactions_total": "counter",
    "standby_waits_total": "counter", "standby_wait_microseconds_total": "counter",
    "standby": "gauge", "takeovers_total": "counter", "fenced_total": "counter",
    "snapshot_rows_total": "counter", "snapshot_tables_queued": "gauge",
    "start_time_seconds": "gauge", "info": "gauge", "backfilling": "gauge",
    "timeline_forks_with_phantoms_total": "counter", "kafka_transactions_expired_total": "counter",
}


def start_with_metrics(outbox, extra_relay="", **kw):
    """Starts the relay with metrics on ":PORT" (loopback by default); returns the port."""
    port = harness.free_port()
    outbox.reconfigure(extra_relay='metrics_listen = ":%d"; %s' % (port, extra_relay), **kw)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    wait_for(lambda: status_of(port, "/readyz") == 200, 30, what="/readyz 200")
    return port


def listeners(port):
    """Local addresses listening on port, from /proc/net/tcp and tcp6 (hex, as the kernel prints)."""
    found = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, hexport = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.append(addr)
    return found


def outside_address():
    """An address of this host that is not loopback, or None (the route is only looked up)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("delivery", ["exactly-once", "at-least-once"])
def test_metrics_count_what_was_published(outbox, kafka, delivery):
    port = start_with_metrics(outbox, 'delivery = "%s";' % delivery)
    status, body, _ = http_get(port, "/healthz")
    assert (status, body) == (200, "ok\n")

    # Bound to 127.0.0.1 only (":PORT" means loopback).
    assert listeners(port) == ["0100007F"], listeners(port)
    other = outside_address()
    if other:
        with pytest.raises(OSError):
            socket.create_connection((other, port), timeout=5).close()

    rows = write_events(outbox.db, transactions=30, per_txn=4)
    msgs = consume_events(kafka, outbox, len(rows))
    assert len(msgs) == len(rows)
    want_records, want_bytes = {}, {}
    for m in msgs:
        want_records[m["topic"]] = want_records.get(m["topic"], 0) + 1
        want_bytes[m["topic"]] = want_bytes.get(m["topic"], 0) + len(m["key"]) + len(m["value"])

    def published():
        got = scrape(port).by_label(P + "records_published_total", "topic")
        return sum(got.values()) >= len(rows)
    wait_for(published, 30, what="records_published_total to reach %d" % len(rows))
    s = scrape(port)

    for family, kind in FAMILIES.items():
        assert s.types.get(P + family) == kind, family
        assert s.helps.get(P + family), family
    assert s.get(P + "up") == 1 and s.get(P + "ready") == 1
    # The delivery mode as a label (OutboxRelayKafkaTransactionsStalled picks exactly-once by it).
    assert s.by_label(P + "info", "delivery") == {delivery: 1}
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", list(s.by_label(P + "info", "version"))[0])
    assert s.get(P + "backfilling") == 0
    assert s.get(P + "timeline_forks_with_phantoms_total") == 0
    # A fresh broker may refuse the first transactions for a moment ("Erroneous state"): the
    # relay then reads again from the confirmed position, which the counters show.
    replayed = s.get(P + "reconnects_total") > 0
    exact = not replayed or delivery == "exactly-once"  # exactly-once publishes only once
    if replayed:
        assert "reading again from the last confirmed position" in outbox.relay.log()
        assert s.get(P + "rows_read_total") >= len(rows)
    else:
        assert s.get(P + "rows_read_total") == len(rows)
    published = s.by_label(P + "records_published_total", "topic")
    sizes = s.by_label(P + "bytes_published_total", "topic")
    if exact:
        assert published == want_records
        assert sizes == want_bytes
    else:
        assert set(published) == set(want_records)
        assert all(published[t] >= want_records[t] and sizes[t] >= want_bytes[t] for t in published)
    assert s.get(P + "dead_letters_total") == 0

    # The histogram: cumulative buckets up to +Inf, which equals _count: one per record.
    buckets = s.by_label(P + "delivery_latency_seconds_bucket", "le")
    bounds = sorted(buckets, key=float)
    assert bounds[0] == "0.005" and bounds[-2:] == ["60", "+Inf"] and len(bounds) == 14
    counts = [buckets[b] for b in bounds]
    assert counts == sorted(counts)
    count = s.get(P + "delivery_latency_seconds_count")
    assert buckets["+Inf"] == count == sum(published.values())
    assert count == len(rows) if exact else count >= len(rows)
    assert 0 <= s.get(P + "delivery_latency_seconds_sum") < 60 * count
    assert buckets["60"] == count  # published within a minute of the commit

    if delivery == "exactly-once":
        assert s.get(P + "kafka_transactions_committed_total") >= 1
        assert replayed or s.get(P + "kafka_transactions_aborted_total") == 0
    else:
        assert s.get(P + "kafka_transactions_committed_total") == 0
        assert s.get(P + "kafka_transactions_aborted_total") == 0

    # Lag: present, and down to nothing once the relay has caught up and confirmed.
    assert s.get(P + "replication_lag_bytes") >= 0
    assert s.get(P + "replication_lag_seconds") >= 0
    end = int(outbox.db.query("SELECT pg_current_wal_lsn() - '0/0'")[0][0])

    def confirmed_and_caught_up():
        m = scrape(port)
        return (m.get(P + "confirmed_lsn") >= end and m.get(P + "replication_lag_bytes") == 0
                and m.get(P + "replication_lag_seconds") == 0)
    wait_for(confirmed_and_caught_up, 45, what="confirmed_lsn past the rows, lag 0")
    assert outbox.relay.stop() == 0


def test_dead_letters_are_counted(outbox, kafka):
    dlq = outbox.prefix + ".dlq"
    prefix = "m" + outbox.prefix
    port = start_with_metrics(
        outbox, 'dead_letter_topic = "%s";' % dlq,
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, { message_prefix = "%s"; }'
        % (outbox.prefix, prefix))
    # A transactional message whose envelope is not JSON, and a non-transactional message:
    # both become dead letters.
    outbox.db.execute("SELECT pg_logical_emit_message(true, %s, 'not json')", (prefix,))
    outbox.db.execute("SELECT pg_logical_emit_message(false, %s, '{}')", (prefix,))
    rows = write_events(outbox.db, transactions=2, per_txn=3)
    assert len(kafka.consume([dlq], until=2, timeout=60)) == 2
    consume_events(kafka, outbox, len(rows))

    def counted():
        s = scrape(port)
        return s.get(P + "dead_letters_total") == 2 and s.get(P + "delivery_latency_seconds_count") == 8
    wait_for(counted, 30, what="2 dead letters and 8 records counted")
    s = scrape(port)
    assert s.get(P + "rows_read_total") >= 8  # more after a replay (exactly-once counts once)
    published = s.by_label(P + "records_published_total", "topic")
    assert published[dlq] == 2 and sum(published.values()) == 8
    assert outbox.relay.stop() == 0


def test_readyz_follows_the_replication_connection(outbox, kafka, pg):
    port = start_with_metrics(outbox)
    mark = len(outbox.relay.log())
    before = scrape(port).get(P + "reconnects_total")
    pg.stop()
    try:
        wait_for(lambda: status_of(port, "/readyz") == 503, 30, what="/readyz 503 with PostgreSQL down")
        # Alive, and still answering, while it retries.
        assert http_get(port, "/healthz")[:2] == (200, "ok\n")
        s = scrape(port)
        assert s.get(P + "up") == 1 and s.get(P + "ready") == 0
        assert s.get(P + "reconnects_total") == before + 1  # once, however many attempts
        assert outbox.relay.proc.poll() is None
    finally:
        pg.start()
    outbox.relay.wait_log("streaming from slot", since=mark, timeout=60)
    wait_for(lambda: status_of(port, "/readyz") == 200, 30, what="/readyz 200 again")
    rows = write_events(outbox.db, transactions=2, per_txn=2)
    consume_events(kafka, outbox, len(rows))
    wait_for(lambda: scrape(port).get(P + "delivery_latency_seconds_count") == len(rows), 30,
             what="records counted after the reconnect")
    assert scrape(port).get(P + "reconnects_total") >= before + 1
    assert outbox.relay.stop() == 0


def test_bad_metrics_listen_is_refused_with_file_and_line(tmp_path):
    path = tmp_path / "bad.conf"
    for value in ["9187", "127.0.0.1", "127.0.0.1:0", "::1:9187", "http://127.0.0.1:9187"]:
        path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                        'relay = {\n  log_level = "info";\n  metrics_listen = "%s";\n};\n' % value)
        code, out = relayctl.run_once(["check-config", str(path)])
        assert code == 2, out
        assert "%s:5: relay.metrics_listen '%s'" % (path, value) in out, out
        code, out = relayctl.run_once(["--config", str(path)])
        assert code == 2 and "%s:5: relay.metrics_listen" % path in out, out
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                    'relay = { metrics_listen = "[::1]:9187"; };\n')
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 0, out


def test_port_in_use_is_a_configuration_error(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        path = str(tmp_path / "relay.conf")
        relayctl.write_config(path, "host=127.0.0.1 port=1 connect_timeout=1", "127.0.0.1:1", "s",
                              "t", extra_relay='metrics_listen = "127.0.0.1:%d";' % port)
        code, out = relayctl.run_once(["--config", path])
    assert code == 2, out
    assert "relay.metrics_listen: cannot listen on 127.0.0.1:%d: Address already in use" % port in out
