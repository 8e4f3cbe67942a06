# The shipped alerting rules and Grafana dashboard name only series a running relay exports.
import json
import os
import re
import time

import yaml

from events import consume_events, write_events
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
