# Contracts of outbox events: JSON checked against Avro schema files, schema versions per event, the start-time compatibility check and subject naming strategies, against a real registry (Apicurio).
import json
import struct
import uuid

import pytest

from harness import wait_for
from test_avro import DLQ, OPENED, insert
from test_sql_kit import EMIT, OUTBOX_SQL_1_2, PUBLISH, install, kit_objects, one, psql_file, role  # noqa: F401

OPENED_JSON = '{"seq": 1, "plan": "basic"}'


def dead_letters(kafka, xid):
    """The dead letters of the transaction xid (bytes, as in dlq_xid)."""
    return [m for m in kafka.consume([DLQ], timeout=10) if dict(m["headers"])["dlq_xid"] == xid]


def wait_dead_letter(kafka, xid):
    found = []

    def there():
        found[:] = dead_letters(kafka, xid)
        return found
    wait_for(there, 60, what="the dead letter")
    return found[0]


def schema_dir(tmp_path, files):
    """A schema directory holding files ({name: schema as a dict})."""
    d = tmp_path / "schemas"
    d.mkdir(exist_ok=True)
    for name, schema in files.items():
        (d / name).write_text(json.dumps(schema, indent=2))
    return d


# ---------------------------------------------------------------------------------------------
# format = "json" with a contract
# ---------------------------------------------------------------------------------------------

def test_a_json_source_with_a_contract_publishes_fitting_events_byte_for_byte(outbox, kafka, tmp_path):
    """contract = true: each payload is checked against <event_type>.avsc and published as it
    is; one that does not fit is dead-lettered with the field and the rule, never published.
    No schema registry is configured (nor needed)."""
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; contract = true; }' % outbox.prefix,
        extra_top='schema_registry = { schema_dir = "%s"; };' % d)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "b\u00e4sic"})
    bad_xid = insert(outbox.db, "account", "AccountOpened", {"seq": "two", "plan": "basic"})
    unknown_xid = insert(outbox.db, "account", "AccountClosed", {"seq": 3})
    insert(outbox.db, "account", "AccountOpened", {"seq": 4, "plan": "pro"})
    dead = wait_dead_letter(kafka, bad_xid)
    assert dict(dead["headers"])["dlq_reason"] == b"field seq: expected long, got a string"
    dead = wait_dead_letter(kafka, unknown_xid)
    assert b'no Avro schema for event type "AccountClosed"' in dict(dead["headers"])["dlq_reason"]
    assert len(kafka.consume([outbox.topic("account")], until=2, timeout=60)) == 2
    assert outbox.relay.stop() == 0
    msgs = kafka.consume([outbox.topic("account")], timeout=10)  # all it published: nothing more
    stored = [r[0] for r in outbox.db.query(
        "SELECT payload::text FROM outbox.events WHERE payload->>'seq' IN ('1', '4') ORDER BY seq")]
    assert [m["value"] for m in msgs] == [t.encode() for t in stored]  # byte for byte
    assert "schema_id" not in dict(msgs[0]["headers"])


def test_a_schema_version_member_of_the_headers_object_picks_no_file(outbox, kafka, tmp_path):
    """An application's own {"schema_version": "1.0"} in the headers column is an ordinary
    header: the event is checked against the unversioned AccountOpened.avsc and published with
    that header, not dead-lettered for a version "1.0"."""
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; contract = true; }' % outbox.prefix,
        extra_top='schema_registry = { schema_dir = "%s"; };' % d)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.db.execute("""INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload, headers)
                         VALUES ('account', 'c-1', 'AccountOpened', %s::jsonb, '{"schema_version": "1.0"}')""",
                      (OPENED_JSON,))
    msgs = kafka.consume([outbox.topic("account")], until=1, timeout=60)
    assert len(msgs) == 1
    assert dict(msgs[0]["headers"])["schema_version"] == b"1.0"
    assert outbox.relay.stop() == 0


def test_a_contract_needs_a_schema_dir_but_no_registry(tmp_path):
    import relayctl
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    path = tmp_path / "relay.conf"
    base = ('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
            'sources = ( { table = "outbox.events"; contract = true; } );\n')
    path.write_text(base)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s:3: a source with contract = true needs schema_registry.schema_dir" % path in out, out
    path.write_text(base + 'schema_registry = { schema_dir = "%s"; };\n' % d)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 0, out


def test_schema_dir_errors_name_the_config_line_and_the_file(tmp_path):
    """A schema_dir that cannot be read, or holding a directory named X.avsc, is refused at the
    line setting schema_dir; versions go up to the kit's integer maximum."""
    import relayctl
    path = tmp_path / "relay.conf"
    base = ('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
            'sources = ( { table = "outbox.events"; contract = true; } );\n'
            'schema_registry = {\n  schema_dir = "%s";\n};\n')
    path.write_text(base % (tmp_path / "missing"))
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "%s:5: schema_registry.schema_dir: cannot read the directory" % path in out, out
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED, "AccountOpened.v2147483647.avsc": OPENED})
    path.write_text(base % d)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 0, out
    (d / "Sub.avsc").mkdir()
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and out.strip() == "%s:5: %s/Sub.avsc: not a regular file" % (path, d), out


# ---------------------------------------------------------------------------------------------
# schema versions per event
# ---------------------------------------------------------------------------------------------

OPENED_V1 = {"type": "record", "name": "AccountOpened", "namespace": "identity.events",
             "fields": [{"name": "seq", "type": "long"}, {"name": "plan", "type": "string"}]}
OPENED_V2 = {"type": "record", "name": "AccountOpened", "namespace": "identity.events",
             "fields": [{"name": "seq", "type": "long"}, {"name": "plan", "type": "string"},
                        {"name": "region", "type": "string", "default": "eu"}]}


def decode_by_writer_schema(registry, value):
    """An independent decoder: fastavro with the writer schema the registry serves for the
    record's id (wire format: magic 0, 4-byte id)."""
    import io
    import fastavro
    assert value[0] == 0
    schema_id = struct.unpack(">I", value[1:5])[0]
    status, answer = registry.request("GET", "/schemas/ids/%d" % schema_id)
    assert status == 200, answer
    schema = fastavro.parse_schema(json.loads(answer["schema"]))
    return schema_id, fastavro.schemaless_reader(io.BytesIO(value[5:]), schema)


def insert_versioned(db, aggregate, event_type, payload, version, key="c-1"):
    """One outbox row written by outbox.publish() with a schema version; returns its xid."""
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SELECT outbox.publish(%s, %s, %s, %s::jsonb, NULL, %s)",
                (aggregate, key, event_type, json.dumps(payload), version))
    cur.execute("SELECT txid_current()")
    xid = str(cur.fetchone()[0]).encode()
    conn.commit()
    conn.close()
    return xid


def emit_versioned(db, aggregate, event_type, payload, version, key="c-1"):
    """One event by outbox.emit() (message path) with a schema version (envelope v2)."""
    conn = db.connect(autocommit=True)
    conn.cursor().execute("SELECT outbox.emit(%s, %s, %s, %s::jsonb, NULL, 'outbox', %s)",
                          (aggregate, key, event_type, json.dumps(payload), version))
    conn.close()


def test_events_of_two_schema_versions_decode_by_their_writer_schemas(outbox, kafka, registry, tmp_path):
    """AccountOpened.v1.avsc and .v2.avsc next to AccountOpened.avsc: each event is converted by
    the file of its schema_version (publish() and emit() argument), registered under the topic's
    subject as two versions, and says its version in the schema_version header; an independent
    decoder with the writer schema fetched by id gets each payload back. A version without a
    file is dead-lettered."""
    unversioned = dict(OPENED_V1, doc="events written before versions")  # another text: another id
    d = schema_dir(tmp_path, {"AccountOpened.avsc": unversioned, "AccountOpened.v1.avsc": OPENED_V1,
                              "AccountOpened.v2.avsc": OPENED_V2})
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; }, '
                '{ message_prefix = "outbox"; topic = "%s.${aggregate_type}"; format = "avro"; }'
                % (outbox.prefix, outbox.prefix),
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; };' % (registry.url, d))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 2, "plan": "pro", "region": "us"}, 2)
    emit_versioned(outbox.db, "account", "AccountOpened", {"seq": 3, "plan": "pro", "region": "ap"}, 2)
    emit_versioned(outbox.db, "account", "AccountOpened", {"seq": 4, "plan": "basic"}, 1)
    insert(outbox.db, "account", "AccountOpened", {"seq": 5, "plan": "free"})  # no version
    missing = insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 6, "plan": "x"}, 3)
    dead = wait_dead_letter(kafka, missing)
    assert dict(dead["headers"])["dlq_reason"] == (
        b'no Avro schema for event type "AccountOpened" version 3 '
        b'(no AccountOpened.v3.avsc in schema_registry.schema_dir)')
    assert len(kafka.consume([outbox.topic("account")], until=5, timeout=60)) == 5
    assert outbox.relay.stop() == 0
    msgs = kafka.consume([outbox.topic("account")], timeout=10)  # all it published: nothing more
    got = [(dict(m["headers"]).get("schema_version"),) + decode_by_writer_schema(registry, m["value"]) for m in msgs]
    assert [(v, p) for v, _, p in got] == [
        (b"1", {"seq": 1, "plan": "basic"}),
        (b"2", {"seq": 2, "plan": "pro", "region": "us"}),
        (b"2", {"seq": 3, "plan": "pro", "region": "ap"}),
        (b"1", {"seq": 4, "plan": "basic"}),
        (None, {"seq": 5, "plan": "free"}),
    ]
    ids = {v: i for v, i, _ in got}
    subject = outbox.topic("account") + "-value"
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert status == 200 and len(versions) == 3 and len(set(ids.values())) == 3
    for m, (v, i, _) in zip(msgs, got):
        assert dict(m["headers"])["schema_id"] == str(i).encode()


def test_kit_1_3_upgrade_keeps_old_calls_and_grants_working(db, pg, role):
    """1.2 -> 1.3 replaces publish() and emit() by signatures with a trailing schema_version:
    a 4- or 5-argument publish() and a 6-argument emit() still work for the roles granted them
    under 1.2 (also inside a function written before), grants move to the new signatures (grant
    option kept), and the result equals a fresh 1.3 install with the same grants; again: no-op."""
    psql_file(db, OUTBOX_SQL_1_2)
    assert one(db, "SELECT outbox.kit_version()") == "1.2"
    app, admin = role("t_app"), role("t_admin")
    old_grants = ('GRANT USAGE ON SCHEMA outbox TO "{a}", "{d}"; GRANT INSERT ON outbox.events TO "{a}"; '
                  'GRANT EXECUTE ON FUNCTION {p} TO "{a}"; GRANT EXECUTE ON FUNCTION {e} TO "{a}"; '
                  'GRANT EXECUTE ON FUNCTION {e} TO "{d}" WITH GRANT OPTION')
    db.execute(old_grants.format(a=app, d=admin, p="outbox.publish(text, text, text, jsonb, jsonb)",
                                 e="outbox.emit(text, text, text, jsonb, jsonb, text)"))
    db.execute("""CREATE FUNCTION public.app_publish(n int) RETURNS uuid LANGUAGE plpgsql AS $$
                  BEGIN RETURN outbox.publish('user', 'u-' || n, 'Created', jsonb_build_object('n', n),
                                              '{"h": "1"}'); END $$""")
    db.execute('GRANT EXECUTE ON FUNCTION public.app_publish(int) TO "%s"' % app)

    out = install(db).stdout
    assert "upgrading 1.2 to 1.3" in out
    assert one(db, "SELECT outbox.kit_version()") == "1.3"
    assert one(db, "SELECT count(*) FROM pg_proc WHERE pronamespace = 'outbox'::regnamespace "
                   "AND proname IN ('publish', 'emit')") == 2
    conn = db.pg.connect(dbname=db.name, user=app)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT outbox.publish('user', 'u-4', 'Created', '{}')")
            cur.execute("SELECT outbox.publish('user', 'u-5', 'Created', '{}', '{\"h\": \"x\"}')")
            cur.execute("SELECT outbox.publish('user', 'u-6', 'Created', '{}', NULL, 2)")
            cur.execute("SELECT outbox.publish('user', 'u-7', 'Created', '{}', schema_version => 3)")
            cur.execute("SELECT public.app_publish(8)")
            cur.execute("SELECT outbox.emit('user', 'u-9', 'Created', '{}', NULL, 'outbox')")
            cur.execute("SELECT outbox.emit('user', 'u-9', 'Created', '{}', NULL, 'outbox', 2)")
    finally:
        conn.close()
    assert db.query("SELECT aggregate_id, schema_version FROM outbox.events ORDER BY seq") == [
        ("u-4", None), ("u-5", None), ("u-6", 2), ("u-7", 3), ("u-8", None)]
    with pytest.raises(Exception, match="schema_version must be 1 or more"):
        db.execute("SELECT outbox.publish('user', 'u-1', 'Created', '{}', NULL, 0)")
    assert one(db, "SELECT has_function_privilege(%%s, '%s', 'EXECUTE WITH GRANT OPTION')" % EMIT, (admin,))
    assert not one(db, "SELECT has_function_privilege('public', '%s', 'EXECUTE')" % PUBLISH)

    # The same objects, definitions and privileges as a fresh 1.3 install with the same grants.
    fresh = pg.create_database("t_fresh_%s" % uuid.uuid4().hex[:8])
    try:
        install(fresh)
        fresh.execute(old_grants.format(a=app, d=admin, p=PUBLISH, e=EMIT))
        assert kit_objects(db) == kit_objects(fresh)
    finally:
        pg.drop_database(fresh.name)
    before = kit_objects(db)
    install(db)
    assert kit_objects(db) == before


# ---------------------------------------------------------------------------------------------
# an incompatible new version is refused at start
# ---------------------------------------------------------------------------------------------

OPENED_V2_INCOMPATIBLE = {"type": "record", "name": "AccountOpened", "namespace": "identity.events",
                          "fields": [{"name": "seq", "type": "long"}, {"name": "plan", "type": "string"},
                                     {"name": "owner", "type": "string"}]}  # no default: not BACKWARD


def start_versions(outbox, registry, d, topic=None, registry_extra=""):
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s"; format = "avro"; }'
                % (topic or outbox.prefix + ".${aggregate_type}"),
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; %s };' % (registry.url, d, registry_extra))
    outbox.relay.start()


def error_lines(relay):
    return [line for line in relay.log().splitlines() if " error " in line]


@pytest.mark.parametrize("fixed_topic", [False, True], ids=["topic-template", "fixed-topic"])
def test_an_incompatible_new_version_is_refused_at_start(outbox, kafka, registry, tmp_path, fixed_topic):
    """v1 is registered (BACKWARD); a v2 file whose readers cannot read v1 data (a new field
    without a default) stops the start: exit 2, one line naming the file,
    the subject and the registry's reason, before any event is published. The subject is found
    in the registry (a topic template: the subject whose latest has the record's full name) or
    known from a fixed topic."""
    topic = outbox.topic("accounts") if fixed_topic else outbox.topic("account")
    subject = topic + "-value"
    assert registry.request("GET", "/config")[1]["compatibilityLevel"] == "BACKWARD"
    status, _ = registry.request("POST", "/subjects/%s/versions" % subject,
                                 {"schema": json.dumps(OPENED_V1, separators=(",", ":"))})
    assert status == 200
    d = schema_dir(tmp_path, {"AccountOpened.v1.avsc": OPENED_V1, "AccountOpened.v2.avsc": OPENED_V2_INCOMPATIBLE})
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
    start_versions(outbox, registry, d, topic=topic if fixed_topic else None)
    assert outbox.relay.wait_exit(60) == 2
    errors = error_lines(outbox.relay)
    assert len(errors) == 1, errors
    assert ("schema file %s/AccountOpened.v2.avsc is incompatible with subject %s in the schema registry: "
            % (d, subject)) in errors[0], errors
    assert "owner" in errors[0].split("schema registry: ", 1)[1]  # the registry's reason names the field
    assert kafka.consume([topic], timeout=3) == []
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert versions == [1]  # nothing registered
    # A compatible v2 (a default for the new field) starts, and both versions go out.
    (d / "AccountOpened.v2.avsc").write_text(json.dumps(OPENED_V2))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    assert "1 (file, subject) pairs new to the registry, all compatible" in outbox.relay.log()
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 2, "plan": "pro", "region": "us"}, 2)
    msgs = kafka.consume([topic], until=2, timeout=60)
    assert [decode_by_writer_schema(registry, m["value"])[1]["seq"] for m in msgs] == [1, 2]
    assert outbox.relay.stop() == 0


ORDER_PLACED = {"type": "record", "name": "OrderPlaced", "namespace": "shop.events",
                "fields": [{"name": "order", "type": "string"}]}


def test_other_event_types_are_not_checked_against_a_fixed_topics_subject(outbox, kafka, registry, tmp_path):
    """TopicNameStrategy, a fixed topic whose subject holds AccountOpened: OrderPlaced.avsc in the
    same directory (for another source's topic) is not a version of that subject and does not
    stop the start; AccountOpened's new version is checked there and goes out."""
    topic = outbox.topic("accounts")
    subject = topic + "-value"
    status, _ = registry.request("POST", "/subjects/%s/versions" % subject,
                                 {"schema": json.dumps(OPENED_V1, separators=(",", ":"))})
    assert status == 200
    d = schema_dir(tmp_path, {"AccountOpened.v1.avsc": OPENED_V1, "AccountOpened.v2.avsc": OPENED_V2,
                              "OrderPlaced.avsc": ORDER_PLACED})
    start_versions(outbox, registry, d, topic=topic)
    outbox.relay.wait_streaming()
    assert error_lines(outbox.relay) == []
    assert "1 (file, subject) pairs new to the registry, all compatible" in outbox.relay.log()
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "pro", "region": "us"}, 2)
    msgs = kafka.consume([topic], until=1, timeout=60)
    assert decode_by_writer_schema(registry, msgs[0]["value"])[1]["seq"] == 1
    assert outbox.relay.stop() == 0


class RefusingRegistry:
    """A registry (or proxy) that registers schemas (id 7) and tells a subject's latest version
    (AccountOpened v1), knows no schema by text (404), but answers 403 to the compatibility check
    and to listings."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/versions/latest"):
                    self.send(200, {"id": 7, "version": 1, "schema": json.dumps(OPENED_V1)})
                else:
                    self.send(403, {"error_code": 40301, "message": "forbidden"})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.startswith("/compatibility/"):
                    self.send(403, {"error_code": 40301, "message": "User is denied operation"})
                elif self.path.endswith("/versions"):
                    self.send(200, {"id": 7})
                else:
                    self.send(404, {"error_code": 40403, "message": "Schema not found"})

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_a_registry_refusing_the_compatibility_check_does_not_hold_the_stream(outbox, kafka, tmp_path):
    """403 to the compatibility check (200 to registration): the relay says once that it cannot
    check, starts, and publishes; registration decides."""
    fake = RefusingRegistry()
    try:
        d = schema_dir(tmp_path, {"AccountOpened.v1.avsc": OPENED_V1, "AccountOpened.v2.avsc": OPENED_V2})
        outbox.reconfigure(
            sources='{ table = "outbox.events"; topic = "%s"; format = "avro"; }' % outbox.topic("accounts"),
            extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; };' % (fake.url, d))
        outbox.relay.start()
        outbox.relay.wait_streaming()
        insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
        msgs = kafka.consume([outbox.topic("accounts")], until=1, timeout=60)
        assert msgs[0]["value"][:5] == b"\x00\x00\x00\x00\x07"
        assert outbox.relay.stop() == 0
        log = outbox.relay.log()
        assert log.count("cannot check the schema files against subject") == 1
        assert "holding back" not in log
    finally:
        fake.stop()


def test_a_registry_down_at_start_holds_the_check_until_it_answers(outbox, kafka, registry, tmp_path):
    """The registry is frozen at start: the relay says it cannot check and starts anyway; the
    check runs before the first Avro event needs the registry, so an incompatible file is still
    refused before anything is registered or published (at that event: exit 1)."""
    subject = outbox.topic("account") + "-value"
    status, _ = registry.request("POST", "/subjects/%s/versions" % subject,
                                 {"schema": json.dumps(OPENED_V1, separators=(",", ":"))})
    assert status == 200
    d = schema_dir(tmp_path, {"AccountOpened.v1.avsc": OPENED_V1, "AccountOpened.v2.avsc": OPENED_V2_INCOMPATIBLE})
    registry.pause()
    try:
        start_versions(outbox, registry, d, registry_extra="timeout_ms = 1000;")
        outbox.relay.wait_log("cannot check the schema files against the schema registry at start", timeout=30)
        outbox.relay.wait_streaming()
        insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
        outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
    finally:
        registry.resume()
    assert outbox.relay.wait_exit(60) == 1
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and "AccountOpened.v2.avsc is incompatible with subject %s" % subject in errors[0], errors
    assert kafka.consume([outbox.topic("account")], timeout=3) == []


# ---------------------------------------------------------------------------------------------
# subject naming strategies
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", ["TopicNameStrategy", "RecordNameStrategy", "TopicRecordNameStrategy"])
def test_each_subject_strategy_names_subjects_as_confluents_serializers_do(outbox, kafka, registry, tmp_path, strategy):
    """schema_registry.subject_strategy: the schema goes to <topic>-value, <record full name> or
    <topic>-<record full name>; the schema_subject header says which. The start-time check finds
    that subject (v1 registered there: an incompatible v2 file is refused with exit 2), and once
    v2 is compatible both versions are published under it, decoded by their writer schemas."""
    ns = outbox.prefix  # a record full name of this test's own: RecordNameStrategy's subject
    v1, v2, bad = (dict(s, namespace=ns) for s in (OPENED_V1, OPENED_V2, OPENED_V2_INCOMPATIBLE))
    topic = outbox.topic("account")
    full = ns + ".AccountOpened"
    subject = {"TopicNameStrategy": topic + "-value", "RecordNameStrategy": full,
               "TopicRecordNameStrategy": topic + "-" + full}[strategy]
    status, _ = registry.request("POST", "/subjects/%s/versions" % subject,
                                 {"schema": json.dumps(v1, separators=(",", ":"))})
    assert status == 200
    d = schema_dir(tmp_path, {"AccountOpened.v1.avsc": v1, "AccountOpened.v2.avsc": bad})
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
    start_versions(outbox, registry, d, registry_extra='subject_strategy = "%s";' % strategy)
    assert outbox.relay.wait_exit(60) == 2
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and "AccountOpened.v2.avsc is incompatible with subject %s in" % subject in errors[0], errors

    (d / "AccountOpened.v2.avsc").write_text(json.dumps(v2))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 2, "plan": "pro", "region": "us"}, 2)
    msgs = kafka.consume([topic], until=2, timeout=60)
    assert [decode_by_writer_schema(registry, m["value"])[1] for m in msgs] == [
        {"seq": 1, "plan": "basic"}, {"seq": 2, "plan": "pro", "region": "us"}]
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert status == 200 and versions == [1, 2]
    for m, version in zip(msgs, [1, 2]):  # the first one came from the table (backfill)
        headers = dict(m["headers"])
        assert headers["schema_version"] == str(version).encode()
        assert headers["schema_subject"] == subject.encode()
        status, latest = registry.request("GET", "/subjects/%s/versions/%d" % (subject, version))
        assert headers["schema_id"] == str(latest["id"]).encode()
    assert outbox.relay.stop() == 0


def test_a_record_strategy_needs_named_schemas(tmp_path):
    import relayctl
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED, "Plain.avsc": {"type": "string"}})
    path = tmp_path / "relay.conf"
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                    'sources = ( { table = "outbox.events"; format = "avro"; } );\n'
                    'schema_registry = { url = "http://127.0.0.1:1/apis/ccompat/v7"; schema_dir = "%s"; '
                    'subject_strategy = "RecordNameStrategy"; };\n' % d)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and ("%s:4: %s/Plain.avsc: schema_registry.subject_strategy = \"RecordNameStrategy\" needs a named schema"
                          % (path, d)) in out, out
    path.write_text(path.read_text().replace("RecordNameStrategy", "RecordName"))
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "subject_strategy" in out, out


# ---------------------------------------------------------------------------------------------
# keys in Avro
# ---------------------------------------------------------------------------------------------

def test_avro_keys_are_strings_registered_under_the_topic_key_subject(outbox, kafka, registry, tmp_path):
    """key_format = "avro": the key is an Avro string in the wire format, its schema
    {"type": "string"} registered under <topic>-key; Confluent's deserializer reads it back; a tombstone's key is
    the same bytes as its event's (compaction); check-config refuses it on a JSON source."""
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    outbox.db.execute("CREATE TABLE public.acc_outbox (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                      "aggregate_type text, aggregate_id text, event_type text, payload text)")
    outbox.reconfigure(
        sources='{ table = "public.acc_outbox"; topic = "%s.${aggregate_type}"; format = "avro"; '
                'key_format = "avro"; tombstones = true; }' % outbox.prefix,
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; };' % (registry.url, d))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    key = "c-\u00e9-" + "x" * 70  # a length over 63: a two-byte varint
    for payload in ['{"seq": 1, "plan": "basic"}', None]:  # an event, then a tombstone
        outbox.db.execute("INSERT INTO public.acc_outbox (aggregate_type, aggregate_id, event_type, payload) "
                          "VALUES ('account', %s, 'AccountOpened', %s)", (key, payload))
    msgs = kafka.consume([outbox.topic("account")], until=2, timeout=60)
    assert len(msgs) == 2 and msgs[1]["value"] is None
    subject = outbox.topic("account") + "-key"
    status, latest = registry.request("GET", "/subjects/%s/versions/latest" % subject)
    assert status == 200 and json.loads(latest["schema"]) == {"type": "string"}
    raw = key.encode()
    assert msgs[0]["key"] == b"\0" + struct.pack(">I", latest["id"]) + bytes([(2 * len(raw)) & 0x7f | 0x80, (2 * len(raw)) >> 7]) + raw
    assert msgs[1]["key"] == msgs[0]["key"]
    assert decode_by_writer_schema(registry, msgs[0]["key"])[1] == key
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    deser = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    assert deser(msgs[0]["key"], SerializationContext(msgs[0]["topic"], MessageField.KEY)) == key
    assert decode_by_writer_schema(registry, msgs[0]["value"])[1] == {"seq": 1, "plan": "basic"}
    assert outbox.relay.stop() == 0


def test_a_row_the_broker_refuses_is_dead_lettered_with_its_text_key_not_the_avro_key(outbox, kafka, registry, tmp_path):
    """key_format = "avro" and a record the broker refuses (the topic's max.message.bytes is
    2000, the relay's limit higher, compression on): the dead letter's key is the key column's
    text, as for every dead letter, not the Avro-encoded key."""
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    topic = outbox.topic("account")
    kafka.create_topic(topic, partitions=1, config={"max.message.bytes": "2000"})
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; '
                'key_format = "avro"; }' % outbox.prefix,
        extra_kafka='compression_type = "gzip";',
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; };' % (registry.url, d))
    outbox.relay.start()
    outbox.relay.wait_streaming()
    big = "".join("%08x" % (i * 2654435761 % 2 ** 32) for i in range(700))  # 5600 bytes, ~3 kB gzipped
    xid = insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": big}, key="c-big")
    dead = wait_dead_letter(kafka, xid)
    assert b"the broker refused its record" in dict(dead["headers"])["dlq_reason"]
    assert dead["key"] == b"c-big"
    assert outbox.relay.stop() == 0


def test_avro_keys_need_an_avro_source(tmp_path):
    import relayctl
    code, out = relayctl.check_config_text(tmp_path, 'sources = ( { table = "outbox.events"; key_format = "avro"; } );\n')
    assert code == 2 and 'relay.conf:3: key_format = "avro" needs format = "avro"' in out, out


# ---------------------------------------------------------------------------------------------
# contracts kept in the registry (schema_registry.contract_prefix) instead of files
# ---------------------------------------------------------------------------------------------

def register_contracts(registry, subject, *schemas):
    """Registers each schema as the next version of subject, as a schema's owner would."""
    for s in schemas:
        status, answer = registry.request("POST", "/subjects/%s/versions" % subject,
                                          {"schema": json.dumps(s)})
        assert status == 200, answer


def start_registry_contracts(outbox, registry, prefix, fmt='format = "avro";', registry_extra=""):
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; %s }' % (outbox.prefix, fmt),
        extra_top='schema_registry = { url = "%s"; contract_prefix = "%s"; %s };'
                  % (registry.url, prefix, registry_extra))
    outbox.relay.start()


def test_contracts_from_the_registry_convert_events_by_their_version(outbox, kafka, registry):
    """contract_prefix: versions 1 and 2 of subject <prefix>AccountOpened are the contracts of
    AccountOpened events of schema_version 1 and 2, the latest (2) of events without a version;
    no schema file anywhere. A version the subject does not have is dead-lettered, naming it."""
    prefix = "contracts-%s." % uuid.uuid4().hex[:8]
    register_contracts(registry, prefix + "AccountOpened", OPENED_V1, OPENED_V2)
    start_registry_contracts(outbox, registry, prefix)
    outbox.relay.wait_log("contracts: 2 versions of 1 subjects %s<event_type> from the schema registry" % prefix)
    outbox.relay.wait_streaming()
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"}, 1)
    insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 2, "plan": "pro", "region": "us"}, 2)
    insert(outbox.db, "account", "AccountOpened", {"seq": 3, "plan": "free", "region": "ap"})  # the latest
    missing = insert_versioned(outbox.db, "account", "AccountOpened", {"seq": 4, "plan": "x"}, 3)
    dead = wait_dead_letter(kafka, missing)
    assert dict(dead["headers"])["dlq_reason"] == (
        b'no Avro schema for event type "AccountOpened" version 3 '
        b'(no version 3 of subject ' + prefix.encode() + b'AccountOpened in the schema registry)')
    assert len(kafka.consume([outbox.topic("account")], until=3, timeout=60)) == 3
    assert outbox.relay.stop() == 0
    msgs = kafka.consume([outbox.topic("account")], timeout=10)
    got = [decode_by_writer_schema(registry, m["value"])[1] for m in msgs]
    assert got == [{"seq": 1, "plan": "basic"}, {"seq": 2, "plan": "pro", "region": "us"},
                   {"seq": 3, "plan": "free", "region": "ap"}]


def test_a_json_contract_from_the_registry_dead_letters_what_does_not_fit(outbox, kafka, registry):
    """format json with contract = true and contract_prefix: checked by the registry's schema,
    published byte for byte; a payload that does not fit is dead-lettered with field and rule."""
    prefix = "contracts-%s." % uuid.uuid4().hex[:8]
    register_contracts(registry, prefix + "AccountOpened", OPENED_V1)
    start_registry_contracts(outbox, registry, prefix, fmt="contract = true;")
    outbox.relay.wait_streaming()
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
    bad = insert(outbox.db, "account", "AccountOpened", {"seq": "one", "plan": "basic"})
    dead = wait_dead_letter(kafka, bad)
    assert dict(dead["headers"])["dlq_reason"] == b"field seq: expected long, got a string"
    msgs = kafka.consume([outbox.topic("account")], until=1, timeout=60)
    assert [json.loads(m["value"]) for m in msgs] == [{"seq": 1, "plan": "basic"}]
    assert outbox.relay.stop() == 0


def test_a_registry_down_at_start_holds_events_until_their_contracts_are_fetched(outbox, kafka, registry):
    """The registry frozen at start: the relay says it cannot fetch the contracts and starts;
    the first event waits (the slot does not move past it), then goes out once they come."""
    prefix = "contracts-%s." % uuid.uuid4().hex[:8]
    register_contracts(registry, prefix + "AccountOpened", OPENED_V1)
    registry.pause()
    try:
        start_registry_contracts(outbox, registry, prefix, registry_extra="timeout_ms = 1000;")
        outbox.relay.wait_log("cannot fetch the contracts from the schema registry at start", timeout=30)
        outbox.relay.wait_streaming()
        insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
        outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
    finally:
        registry.resume()
    msgs = kafka.consume([outbox.topic("account")], until=1, timeout=60)
    assert [decode_by_writer_schema(registry, m["value"])[1] for m in msgs] == [{"seq": 1, "plan": "basic"}]
    assert outbox.relay.stop() == 0


def test_contracts_from_a_prefix_no_subject_has_stop_the_start(outbox, kafka, registry):
    prefix = "nothing-%s." % uuid.uuid4().hex[:8]
    start_registry_contracts(outbox, registry, prefix)
    assert outbox.relay.wait_exit(60) != 0
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and 'no subject of the schema registry starts with "%s"' % prefix in errors[0], errors


def test_contracts_come_from_files_or_the_registry_not_both(tmp_path):
    import relayctl
    path = tmp_path / "relay.conf"
    path.write_text('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
                    'sources = ( { table = "outbox.events"; format = "avro"; } );\n'
                    'schema_registry = {\n  url = "http://r";\n  schema_dir = "%s";\n'
                    '  contract_prefix = "c.";\n};\n' % tmp_path)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and out.strip() == (
        "%s:6: set one of schema_registry.schema_dir and schema_registry.contract_prefix: "
        "contracts come from files or from the registry" % path), out


def test_a_hold_on_one_topic_leaves_the_schema_subject_of_another_as_it_was(outbox, kafka, registry):
    """An event of topic A is encoded (its subject and id kept), then in one transaction an A
    event and a B event: B's subject is new and the registry is down, so the stream holds and
    the batch is encoded again later. Each record still names its own subject."""
    prefix = "contracts-%s." % uuid.uuid4().hex[:8]
    register_contracts(registry, prefix + "AccountOpened", OPENED_V1)
    start_registry_contracts(outbox, registry, prefix, registry_extra="timeout_ms = 1000;")
    outbox.relay.wait_streaming()
    insert(outbox.db, "account", "AccountOpened", {"seq": 1, "plan": "basic"})
    assert len(kafka.consume([outbox.topic("account")], until=1, timeout=60)) == 1
    registry.pause()
    try:
        conn = outbox.db.connect(autocommit=False)
        cur = conn.cursor()
        for aggregate, seq in (("account", 2), ("audit", 3)):
            cur.execute("INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
                        "VALUES (%s, 'c-1', 'AccountOpened', %s::jsonb)",
                        (aggregate, json.dumps({"seq": seq, "plan": "basic"})))
        conn.commit()
        conn.close()
        outbox.relay.wait_log("holding back the row of outbox.events", timeout=30)
    finally:
        registry.resume()
    msgs = kafka.consume([outbox.topic("account"), outbox.topic("audit")], until=3, timeout=60)
    assert outbox.relay.stop() == 0
    subjects = sorted((m["topic"], dict(m["headers"])["schema_subject"].decode()) for m in msgs)
    assert subjects == sorted([(outbox.topic("account"), outbox.topic("account") + "-value")] * 2 +
                              [(outbox.topic("audit"), outbox.topic("audit") + "-value")])


def test_a_subject_under_the_prefix_that_is_not_avro_stops_the_start(outbox, kafka, registry):
    prefix = "contracts-%s." % uuid.uuid4().hex[:8]
    status, answer = registry.request("POST", "/subjects/%sAccountOpened/versions" % prefix,
                                      {"schema": json.dumps({"$schema": "http://json-schema.org/draft-07/schema#",
                                                                   "type": "object"}),
                                       "schemaType": "JSON"})
    assert status == 200, answer
    start_registry_contracts(outbox, registry, prefix)
    assert outbox.relay.wait_exit(60) != 0
    errors = error_lines(outbox.relay)
    assert len(errors) == 1 and "subject %sAccountOpened version 1 is a JSON schema, not Avro" % prefix in errors[0], errors
