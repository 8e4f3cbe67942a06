# The shipped alerting rules and Grafana dashboard name only series a running relay exports.
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import yaml

from events import consume_events, write_events
import harness
from harness import wait_for
from test_metrics import P, scrape, start_with_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "conf", "prometheus", "outbox-relay-alerts.yml")
DASHBOARD = os.path.join(ROOT, "conf", "grafana", "outbox-relay.json")
OPERATIONS = os.path.join(ROOT, "docs", "operations.md")

# Series Prometheus makes itself for each target, not the relay.
PROMETHEUS_SERIES = {"up"}
# PromQL words that look like names: modifiers, set operators, and le (the bucket label).
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "bool", "offset", "inf", "nan"}


def rules():
    with open(RULES) as f:
        return [r for g in yaml.safe_load(f)["groups"] for r in g["rules"]]


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_exprs():
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def series_names(expr):
    """The series names a PromQL expression selects (no functions, labels, strings or ranges)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "", e)
    e = re.sub(r"\[[^\]]*\]", "", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)
    e = re.sub(r"\$\w+", "", e)  # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def github_anchor(heading):
    """The anchor GitHub (and GitLab) give a Markdown heading."""
    a = heading.strip().lower()
    a = re.sub(r"[^\w\- ]", "", a)
    return a.replace(" ", "-")


def test_series_names_are_read_from_promql():
    assert series_names('histogram_quantile(0.99, sum by (le, instance) (rate(a_bucket{x=~"$y"}[5m]))) > 1e9') == {"a_bucket"}
    assert series_names("time() - b{relay=\"x\"} and on(instance) c == 0 or absent(up{job=\"j\"})") == {"b", "c", "up"}


def test_every_rule_has_a_severity_a_summary_and_a_runbook_in_operations_md():
    anchors = {github_anchor(line.lstrip("#")) for line in open(OPERATIONS) if line.startswith("#")}
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 10
    for r in rules():
        assert r["labels"]["severity"] in ("warning", "critical"), r["alert"]
        a = r["annotations"]
        assert a["summary"] and a["description"], r["alert"]
        anchor = a["runbook_url"].split("#", 1)[1]
        assert anchor == r["alert"].lower(), r["alert"]
        assert anchor in anchors, "docs/operations.md has no section %s" % r["alert"]


def test_the_dashboard_is_an_importable_grafana_dashboard():
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["title"] and d["uid"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    shown = [p for p in d["panels"] if p["type"] != "row"]
    assert len(shown) >= 15
    for p in shown:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"] == p["datasource"], p["title"]
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
    titles = " ".join(p["title"].lower() for p in shown)
    for topic in ("per topic", "latency", "lag", "retained wal", "dead letters",
                  "kafka transactions", "snapshot", "standing by", "streaming"):
        assert topic in titles, topic


def test_every_series_of_the_rules_and_the_dashboard_is_exported_by_the_relay(outbox, kafka):
    launched = time.time()
    port = start_with_metrics(outbox, 'delivery = "exactly-once";')
    rows = write_events(outbox.db, transactions=5, per_txn=2)
    consume_events(kafka, outbox, len(rows))
    wait_for(lambda: scrape(port).get(P + "delivery_latency_seconds_count") == len(rows), 30,
             what="the records counted")
    s = scrape(port)
    exported = {name for name, _ in s.samples}

    used = set()
    for r in rules():
        used |= series_names(r["expr"])
    for e in dashboard_exprs():
        used |= series_names(e)
    assert len(used) >= 20, sorted(used)
    missing = sorted(n for n in used if n not in exported and n not in PROMETHEUS_SERIES)
    assert not missing, "named in the rules or the dashboard, not exported: %s" % missing
    # Histograms are used through their series, never by the family's own name.
    assert P + "delivery_latency_seconds" not in used

    # What the rules assume of these series: the start time is this process's ...
    assert launched - 1 <= s.get(P + "start_time_seconds") <= time.time()
    # ... and an idle exactly-once relay commits (its idle checkpoint) every
    # postgresql.status_interval_ms (1 s here), which OutboxRelayKafkaTransactionsStalled needs.
    before = s.get(P + "kafka_transactions_committed_total")
    wait_for(lambda: scrape(port).get(P + "kafka_transactions_committed_total") >= before + 2, 30,
             what="idle checkpoints committed")
    assert outbox.relay.stop() == 0


class Prometheus:
    """A throwaway Prometheus server (Debian's) on loopback: scrapes one relay, loads the rules."""

    def __init__(self, tmp_path, relay_port):
        binary = shutil.which("prometheus")
        assert binary, "no prometheus binary: run tests/install-deps.sh (Debian package prometheus)"
        self.port = harness.free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [RULES],
            "scrape_configs": [{"job_name": "outbox-relay", "static_configs": [
                {"targets": ["127.0.0.1:%d" % relay_port], "labels": {"relay": "app"}}]}],
        }))
        self.log = tmp_path / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [binary, "--config.file=%s" % config, "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % self.port], stdout=out, stderr=out)
        wait_for(self.ready, 60, what="Prometheus ready (%s)" % self.log)

    def get(self, path, **params):
        url = "http://127.0.0.1:%d%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=10) as res:
            return json.load(res)

    def ready(self):
        assert self.proc.poll() is None, "prometheus exited: %s" % harness.tail(self.log)
        try:
            return self.get("/api/v1/status/runtimeinfo")["status"] == "success"
        except OSError:
            return False

    def query(self, expr):
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", (expr, body)
        return body["data"]["result"]

    def rules(self):
        return [r for g in self.get("/api/v1/rules")["data"]["groups"] for r in g["rules"]]

    def alerts(self):
        return self.get("/api/v1/alerts")["data"]["alerts"]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def dashboard_query(expr):
    """A dashboard expression as Grafana sends it with every relay and instance chosen."""
    return expr.replace("$__rate_interval", "1m").replace("$relay", ".*").replace("$instance", ".*")


def test_a_real_prometheus_evaluates_the_rules_and_the_dashboard_on_a_relay(outbox, kafka, tmp_path):
    port = start_with_metrics(outbox, 'delivery = "exactly-once";')
    prom = Prometheus(tmp_path, port)
    try:
        rows = write_events(outbox.db, transactions=5, per_txn=2)
        consume_events(kafka, outbox, len(rows))
        wait_for(lambda: prom.query("outbox_relay_delivery_latency_seconds_count == %d" % len(rows)),
                 60, what="Prometheus to scrape the records counted")
        # Every rule evaluates without an error, and none is pending or firing for a healthy relay.
        wait_for(lambda: all(not r.get("lastEvaluation", "0001").startswith("0001")
                             for r in prom.rules()), 30, what="every rule evaluated")
        for r in prom.rules():
            assert r["health"] == "ok", r
        # (An evaluation before the first scrape sees no target: OutboxRelayDown pending, once.)
        try:
            wait_for(lambda: prom.alerts() == [], 15)
        except TimeoutError:
            raise AssertionError("pending or firing: %s" % prom.alerts())
        # Every panel's expression returns series (rates need a few scrapes).
        exprs = [dashboard_query(e) for e in dashboard_exprs()]
        try:
            wait_for(lambda: all(prom.query(e) for e in exprs), 60, interval=1)
        except TimeoutError:
            raise AssertionError("no result: %s" % [e for e in exprs if not prom.query(e)])
        # The relay stops: OutboxRelayDown matches its target (pending for its 2 minutes).
        assert outbox.relay.stop() == 0

        def down_pending():
            return [a for a in prom.alerts() if a["labels"]["alertname"] == "OutboxRelayDown"
                    and a["labels"].get("instance") == "127.0.0.1:%d" % port]
        alert = wait_for(down_pending, 30, what="OutboxRelayDown pending")[0]
        assert alert["state"] == "pending" and alert["labels"]["relay"] == "app"
        assert alert["labels"]["severity"] == "critical"
    finally:
        prom.stop()
