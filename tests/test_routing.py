# Routing tests: per-source mappings, headers, CloudEvents, messages, tombstones, dead letters.
import json

import pytest

from harness import wait_for

DLQ = "outbox-relay.dead-letters"

KYC_TABLE = """
CREATE TABLE public.kyc_outbox (
    event_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    applicant_id text,
    kind text,
    body text,
    schema_version int,
    tenant text,
    occurred_at timestamptz DEFAULT '2026-11-22 10:00:00.123456+01'
)"""

KYC_SOURCE = """{
    table = "public.kyc_outbox";
    topic = "%s.kyc.${kind}";
    key = "applicant_id";
    value = "body";
    event_id = "event_uuid";
    event_type = "kind";
    timestamp = "occurred_at";
    headers = [ "schema_version", "tenant" ];
    headers_column = "";
    tombstones = %s;
    cloudevents = true;
    ce_source = "/kyc/screening";
}"""


def envelope(aggregate_type, aggregate_id, event_type, payload, headers=None, event_id="e-1"):
    """The message envelope of outbox.emit() (docs/sql.md), built the same way (json_build_object)."""
    return ("SELECT pg_logical_emit_message(true, 'outbox', json_build_object('id', %s::text, "
            "'aggregate_type', %s::text, 'aggregate_id', %s::text, 'event_type', %s::text, "
            "'headers', %s::jsonb, 'payload', %s::jsonb)::text)",
            (event_id, aggregate_type, aggregate_id, event_type, headers, payload))


def start(outbox, sources, extra_relay=""):
    outbox.reconfigure(sources=sources, extra_relay=extra_relay)
    outbox.relay.start()
    outbox.relay.wait_streaming()


def dead_letters(kafka, xids, count, timeout=60):
    """Dead letters of the given transactions (the topic is shared by the session's tests)."""
    got = []

    def enough():
        got[:] = [m for m in kafka.consume([DLQ], timeout=10) if dict(m["headers"])["dlq_xid"] in xids]
        return len(got) >= count
    wait_for(enough, timeout, what="dead letters")
    return got


def xids_of(db, sql_statements):
    """Runs each statement in its own transaction; returns their xids as bytes."""
    xids = set()
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    for sql, params in sql_statements:
        cur.execute(sql, params)
        cur.execute("SELECT txid_current()")
        xids.add(str(cur.fetchone()[0]).encode())
        conn.commit()
    conn.close()
    return xids


def test_table_mapping_headers_cloudevents_and_timestamp(outbox, kafka):
    outbox.db.execute(KYC_TABLE)
    start(outbox, '{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, %s'
          % (outbox.prefix, KYC_SOURCE % (outbox.prefix, "false")))
    outbox.db.execute("INSERT INTO public.kyc_outbox (event_uuid, applicant_id, kind, body, schema_version, tenant) "
                      "VALUES ('6f1c2d3e-0000-4000-8000-000000000001', 'a-1', 'Screened', '{\"hit\": false}', 3, 'eu')")
    outbox.db.execute("SELECT outbox.publish('user', 'u-1', 'Registered', '{\"n\": 1}', "
                      "'{\"traceparent\": \"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\", "
                      "\"tracestate\": \"vendor=x\"}')")
    kyc = kafka.consume([outbox.prefix + ".kyc.Screened"], until=1, timeout=60)
    assert len(kyc) == 1
    m = kyc[0]
    assert m["key"] == b"a-1" and m["value"] == b'{"hit": false}'
    assert [h for h, _ in m["headers"]] == ["event_id", "event_type", "schema_version", "tenant",
                                           "ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time",
                                           "content-type"]
    h = dict(m["headers"])
    assert h["event_id"] == b"6f1c2d3e-0000-4000-8000-000000000001" == h["ce_id"]
    assert h["ce_type"] == b"Screened" and h["ce_source"] == b"/kyc/screening"
    assert h["ce_specversion"] == b"1.0" and h["schema_version"] == b"3" and h["tenant"] == b"eu"
    assert h["ce_time"] == b"2026-11-22T09:00:00.123Z"
    assert m["timestamp"] == 1795338000123  # 2026-11-22T09:00:00.123Z
    user = kafka.consume([outbox.prefix + ".user"], until=1, timeout=60)
    uh = dict(user[0]["headers"])
    assert uh["traceparent"] == b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert uh["tracestate"] == b"vendor=x"


def test_tombstones_for_null_and_empty_values(outbox, kafka):
    outbox.db.execute(KYC_TABLE)
    start(outbox, KYC_SOURCE % (outbox.prefix, "true"))
    outbox.db.execute("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES "
                      "('a-1', 'Erased', NULL), ('a-2', 'Erased', ''), ('a-3', 'Erased', 'x')")
    msgs = kafka.consume([outbox.prefix + ".kyc.Erased"], until=3, timeout=60)
    by_key = {m["key"]: m["value"] for m in msgs}
    assert by_key == {b"a-1": None, b"a-2": None, b"a-3": b"x"}


def test_message_envelope_is_published_like_a_row(outbox, kafka):
    start(outbox, '{ message_prefix = "outbox"; topic = "%s.${aggregate_type}"; }' % outbox.prefix)
    sql, params = envelope("user", "u-9", "Emitted", '{"big": 9007199254740993, "s": "a\\"b"}',
                           '{"traceparent": "00-abc-01"}', event_id="e-42")
    outbox.db.execute(sql, params)
    # A rolled-back message is never published.
    conn = outbox.db.connect(autocommit=False)
    conn.cursor().execute(*envelope("user", "u-9", "RolledBack", '{}', None, event_id="e-43"))
    conn.rollback()
    conn.close()
    outbox.db.execute(*envelope("user", "u-9", "After", '{}', None, event_id="e-44"))
    msgs = kafka.consume([outbox.prefix + ".user"], until=2, timeout=60)
    assert [dict(m["headers"])["event_type"] for m in msgs] == [b"Emitted", b"After"]
    m = msgs[0]
    assert m["key"] == b"u-9"
    assert m["value"] == b'{"s": "a\\"b", "big": 9007199254740993}'
    h = dict(m["headers"])
    assert h["event_id"] == b"e-42" and h["traceparent"] == b"00-abc-01"


@pytest.mark.parametrize("on_error", ["dead-letter", "stop"])
def test_rows_that_cannot_be_published(outbox, kafka, on_error):
    outbox.db.execute(KYC_TABLE)
    start(outbox, KYC_SOURCE % (outbox.prefix, "false"), extra_relay='on_error = "%s";' % on_error)
    big = "x" * (2 * 1024 * 1024)
    bad = [
        ("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES (NULL, 'T', 'no key')", None),
        ("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES ('a', 'bad/topic', 'x')", None),
        ("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES ('a', 'T', %s)", (big,)),
        ("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES ('a', 'T', NULL)", None),
    ]
    if on_error == "stop":
        xids_of(outbox.db, bad[:1])
        assert outbox.relay.wait_exit(60) == 1
        log = outbox.relay.log()
        assert "cannot publish the row of public.kyc_outbox" in log and "the key is null" in log
        # The slot did not move past the row: a restart meets it again.
        outbox.relay.start()
        assert outbox.relay.wait_exit(60) == 1
        assert outbox.relay.log().count("the key is null") == 2
        return
    xids = xids_of(outbox.db, bad)
    xids_of(outbox.db, [("INSERT INTO public.kyc_outbox (applicant_id, kind, body) VALUES ('ok', 'T', 'fine')", None)])
    good = kafka.consume([outbox.prefix + ".kyc.T"], until=1, timeout=60)
    assert [m["key"] for m in good] == [b"ok"]
    got = dead_letters(kafka, xids, 4)
    reasons = {dict(m["headers"])["dlq_reason"].decode() for m in got}
    assert len(got) == 4, reasons
    assert any("key is null" in r for r in reasons)
    assert any("not a valid Kafka topic name" in r for r in reasons)
    assert any("too large" in r.lower() for r in reasons), reasons
    assert any("value is null" in r for r in reasons)
    for m in got:
        h = dict(m["headers"])
        assert h["dlq_source"] == b"public.kyc_outbox"
        assert h["dlq_lsn"].count(b"/") == 1
        if "dlq_truncated_from" in h:
            assert len(m["value"]) == 65536 and int(h["dlq_truncated_from"]) > 2 * 1024 * 1024
            continue
        rec = json.loads(m["value"])
        assert rec["action"] == "I" and rec["table"] == "kyc_outbox"
    assert outbox.relay.proc.poll() is None


def test_missing_topic_without_auto_create_stops_with_its_name(outbox, kafka):
    start(outbox, '{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }' % outbox.prefix,
          extra_relay="auto_create_topics = false;")
    outbox.db.execute("SELECT outbox.publish('nosuch', 'k', 'T', '{}')")
    assert outbox.relay.wait_exit(60) == 1
    assert "topic %s.nosuch does not exist" % outbox.prefix in outbox.relay.log()


def test_outbox_emit_from_plain_sql_reaches_kafka(outbox, kafka):
    """The SQL kit's message path end to end: outbox.emit() in a psql session, no table row."""
    import subprocess
    start(outbox, '{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                  '{ message_prefix = "outbox"; topic = "%s.${aggregate_type}"; }' % (outbox.prefix, outbox.prefix))
    sql = ("BEGIN;\n"
           "SELECT outbox.publish('doc', 'd-1', 'Stored', '{\"n\": 1}');\n"
           "SELECT outbox.emit('doc', 'd-1', 'Verified', '{\"n\": 12345678901234567890.123}', "
           "'{\"traceparent\": \"00-abc-01\"}');\n"
           "COMMIT;\n")
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", outbox.db.dsn], input=sql.encode(),
                   check=True, stdout=subprocess.DEVNULL)
    msgs = kafka.consume([outbox.prefix + ".doc"], until=2, timeout=60)
    assert [dict(m["headers"])["event_type"] for m in msgs] == [b"Stored", b"Verified"]
    assert msgs[1]["value"] == b'{"n": 12345678901234567890.123}'
    assert dict(msgs[1]["headers"])["traceparent"] == b"00-abc-01"
    assert outbox.db.query("SELECT count(*) FROM outbox.events")[0][0] == 1
