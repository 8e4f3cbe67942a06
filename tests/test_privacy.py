# test_privacy.py: field protection (docs/privacy.md): no protected value leaves the relay in clear, on any path.
import base64
import hashlib
import hmac
import http.client
import json
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

import relayctl
from harness import free_port, wait_for

HASH_KEY = bytes(range(32))
ENC_KEY = bytes(range(100, 132))

PROTECT = """protect = (
  { fields = ["/email"]; action = "hash"; },
  { fields = ["/document/number"]; event_types = ["Person*"]; action = "encrypt"; },
  { fields = ["/name"]; action = "mask"; keep_last = 2; },
  { fields = ["/password"]; action = "drop"; },
  { columns = ["email"]; tables = ["public.*"]; action = "hash"; },
  { columns = ["ssn"]; action = "encrypt"; },
  { columns = ["full_name"]; action = "mask"; keep_last = 3; },
  { columns = ["secret"]; action = "drop"; }
);
protection = { key_id = "test-1"; };
"""

# Every clear value the relay reads that a rule protects, by the path it takes.
TABLE = {"email": "ana.table@example.com", "document": {"type": "passport", "number": "P-TABLE-778899"},
         "name": "Ana Table", "password": "pw-table-secret", "n": 1}
EMIT = {"email": "ana.emit@example.com", "document": {"number": "P-EMIT-112233"},
        "name": "Ana Emit", "password": "pw-emit-secret", "n": 2}
DLQ = {"email": "dlq@example.com", "document": {"number": "P-DLQ-445566"}, "password": "pw-dlq-secret"}
SNAP = (1, "snap@example.com", "SSN-SNAP-0001", "Snap Person", "snap-secret")
CAP = (2, "cap@example.com", "SSN-CAP-0002", "Cap Person", "cap-secret")
MOVED_EMAIL = "moved@example.com"
CLEAR = ["ana.table@example.com", "P-TABLE-778899", "Ana Table", "pw-table-secret",
         "ana.emit@example.com", "P-EMIT-112233", "Ana Emit", "pw-emit-secret",
         "dlq@example.com", "P-DLQ-445566", "pw-dlq-secret",
         "snap@example.com", "SSN-SNAP-0001", "Snap Person", "snap-secret",
         "cap@example.com", "SSN-CAP-0002", "Cap Person", "cap-secret", MOVED_EMAIL]


def hashed(text):
    return hmac.new(HASH_KEY, text.encode(), hashlib.sha256).hexdigest()


def decrypt(value):
    """The clear text of an enc:v1:<key id>:<base64(nonce | ciphertext | tag)> value."""
    scheme, version, key_id, b64 = value.split(":", 3)
    assert (scheme, version, key_id) == ("enc", "v1", "test-1")
    raw = base64.b64decode(b64)
    return AESGCM(ENC_KEY).decrypt(raw[:12], raw[12:], None).decode()


def credentials(tmp_path, hash_key=HASH_KEY.hex(), enc_key=ENC_KEY.hex()):
    d = tmp_path / "credentials"
    d.mkdir(exist_ok=True)
    for name, key in (("protect-hash-key", hash_key), ("protect-encrypt-key", enc_key)):
        if key is None:
            (d / name).unlink(missing_ok=True)
        else:
            (d / name).write_text(key + "\n")
    return {"CREDENTIALS_DIRECTORY": str(d)}


def configure(outbox, tmp_path, protect=PROTECT, extra_relay="", **keys):
    p = outbox.prefix
    outbox.metrics_port = free_port()
    outbox.dlq = p + ".dlq"
    outbox.checkpoints = p + ".checkpoints"
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; }, '
                '{ message_prefix = "outbox"; topic = "%s.${aggregate_type}"; }' % (p, p),
        capture='{ tables = "public.people"; }',
        extra_relay='topic_prefix = "%s"; dead_letter_topic = "%s"; metrics_listen = "127.0.0.1:%d"; '
                    'checkpoint_topic = "%s"; %s'
                    % (p, outbox.dlq, outbox.metrics_port, outbox.checkpoints, extra_relay),
        extra_top=protect)
    outbox.relay.env = credentials(tmp_path, **keys)


def publish(db, aggregate_type, event_type, payload):
    db.execute("SELECT outbox.publish(%s, 'p-1', %s, %s::jsonb)", (aggregate_type, event_type, json.dumps(payload)))


def emit(db, payload):
    db.execute("SELECT outbox.emit('person', 'p-2', 'PersonVerified', %s::jsonb)", (json.dumps(payload),))


def everything_written(outbox, kafka, topics):
    """The bytes of every record (key, value, headers) on the topics and the checkpoint topic
    (snapshot positions), the relay's log and /metrics."""
    blobs = []
    for m in kafka.consume(topics + [outbox.checkpoints], timeout=30):
        blobs += [m["key"] or b"", m["value"] or b""] + [v or b"" for _, v in m["headers"]]
    blobs.append(outbox.relay.log().encode())
    conn = http.client.HTTPConnection("127.0.0.1", outbox.metrics_port, timeout=10)
    conn.request("GET", "/metrics")
    blobs.append(conn.getresponse().read())
    conn.close()
    return b"\n".join(blobs)


def test_protected_values_appear_in_clear_nowhere_the_relay_writes(outbox, kafka, tmp_path):
    db = outbox.db
    db.execute("CREATE TABLE public.people (id int PRIMARY KEY, email text, ssn text, full_name text, secret text)")
    db.execute("ALTER TABLE public.people REPLICA IDENTITY FULL")
    db.execute("INSERT INTO public.people VALUES (%s, %s, %s, %s, %s)", SNAP)
    configure(outbox, tmp_path)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.relay.wait_log("snapshot of public.people done: 1 rows", timeout=60)
    p = outbox.prefix
    publish(db, "person", "PersonRegistered", TABLE)
    emit(db, EMIT)
    db.execute("INSERT INTO public.people VALUES (%s, %s, %s, %s, %s)", CAP)
    db.execute("UPDATE public.people SET id = 20, email = %s WHERE id = 2", (MOVED_EMAIL,))  # a key change
    publish(db, "bad topic!", "PersonRegistered", DLQ)  # not a topic name: dead-lettered
    # A message under the relay's snapshot prefix that is not JSON: ignored, its text not logged.
    db.execute("SELECT pg_logical_emit_message(true, %s, %s)",
               ("outbox-relay:" + outbox.slot, "not json " + SNAP[1]))
    person = kafka.consume([p + ".person"], until=2, timeout=60)
    people = kafka.consume([p + ".public.people"], until=5, timeout=60)
    dead = kafka.consume([outbox.dlq], until=1, timeout=60)
    assert len(person) == 2 and len(people) >= 5 and len(dead) == 1

    # Outbox table and emit(): hash, encrypt (decrypts to the original), mask, drop.
    for m, src in zip(person, (TABLE, EMIT)):
        v = json.loads(m["value"])
        assert v["email"] == hashed(src["email"])
        assert decrypt(v["document"]["number"]) == src["document"]["number"]
        assert v["name"] == "*" * (len(src["name"]) - 2) + src["name"][-2:]
        assert "password" not in v and v["n"] == src["n"]
    assert json.loads(person[0]["value"])["document"]["type"] == "passport"

    # Captured: snapshot row, insert, key change (delete of the old key with its tombstone, update).
    # (Records of different keys may be in different partitions: found by key and op.)
    recs = {(m["key"], json.loads(m["value"])["op"] if m["value"] else None): json.loads(m["value"] or b"null")
            for m in people}
    assert sorted(recs, key=repr) == sorted([(b'{"id":1}', "r"), (b'{"id":2}', "c"), (b'{"id":2}', "d"),
                                             (b'{"id":2}', None), (b'{"id":20}', "u")], key=repr), recs.keys()
    u = recs[(b'{"id":20}', "u")]
    rows = {"r": recs[(b'{"id":1}', "r")]["after"], "c": recs[(b'{"id":2}', "c")]["after"],
            "d": recs[(b'{"id":2}', "d")]["before"], "u-before": u["before"], "u": u["after"]}
    for name, row, src in (("r", rows["r"], SNAP), ("c", rows["c"], CAP), ("d", rows["d"], CAP),
                           ("u-before", rows["u-before"], CAP)):
        assert row["email"] == hashed(src[1]), name
        assert decrypt(row["ssn"]) == src[2], name
        assert row["full_name"] == "*" * (len(src[3]) - 3) + src[3][-3:], name
        assert "secret" not in row, name
    assert rows["u"]["email"] == hashed(MOVED_EMAIL) and rows["u"]["id"] == 20

    # The dead letter: the raw row, encrypted whole; the key holder can read it back.
    h = dict(dead[0]["headers"])
    assert h["dlq_protected"] == b"encrypted" and b"not a valid Kafka topic name" in h["dlq_reason"]
    raw = json.loads(decrypt(dead[0]["value"].decode()))
    assert raw["action"] == "I" and "dlq@example.com" in json.dumps(raw)

    # Nothing the relay wrote holds a protected value in clear.
    written = everything_written(outbox, kafka, [p + ".person", p + ".public.people", outbox.dlq])
    leaked = [c for c in CLEAR if c.encode() in written]
    assert not leaked, leaked

    # Keyed hashes are stable across a restart (same key): consumers can still join on them.
    assert outbox.relay.stop() == 0
    outbox.relay.start()
    outbox.relay.wait_streaming()
    publish(db, "person", "PersonUpdated", {"email": TABLE["email"]})
    again = kafka.consume([p + ".person"], until=3, timeout=60)
    assert json.loads(again[2]["value"])["email"] == json.loads(person[0]["value"])["email"]


def test_a_missing_or_short_key_stops_the_relay_at_start_with_one_line(outbox, kafka, tmp_path):
    configure(outbox, tmp_path, hash_key=None)
    relay = relayctl.Relay(outbox.config_path, str(tmp_path / "a"), env=outbox.relay.env)
    os.makedirs(str(tmp_path / "a"), exist_ok=True)
    relay.start()
    assert relay.wait_exit(60) != 0
    lines = [l for l in relay.log().splitlines() if "protect" in l]
    assert len(lines) == 1, relay.log()
    assert "protect[0] hashes with the key of the systemd credential protect-hash-key, which is missing" \
        in lines[0], lines
    assert lines[0].startswith(outbox.config_path + ":"), lines
    assert lines[0].split(":")[1].isdigit(), lines  # FILE:LINE:

    configure(outbox, tmp_path, enc_key="00112233")
    relay = relayctl.Relay(outbox.config_path, str(tmp_path / "b"), env=outbox.relay.env)
    os.makedirs(str(tmp_path / "b"), exist_ok=True)
    relay.start()
    assert relay.wait_exit(60) != 0
    assert "protect-encrypt-key is 8 hex digits; it must be 64" in relay.log()


def test_a_rule_that_names_nothing_is_refused_with_file_and_line(outbox, kafka, tmp_path):
    configure(outbox, tmp_path, protect='protect = (\n  { action = "hash"; },\n  { fields = ["/a"]; action = "shred"; }\n);\n')
    code, out = relayctl.run_once(["check-config", outbox.config_path])
    assert code != 0
    assert "%s:" % outbox.config_path in out
    assert "protect[0] names nothing" in out and "protect[1].action 'shred' is not one of" in out, out


def test_a_protected_key_column_is_hashed_in_every_key_and_sealed_in_the_snapshot_position(outbox, kafka, tmp_path):
    """A key column under an encrypt rule: the record key is the keyed hash whatever the action
    (deterministic: the same for a row's snapshot record and its changes, so compaction and
    partitioning still work per row); the value keeps the rule's action. A chunked snapshot
    stores its position (the last row's key) encrypted in the checkpoint topic."""
    db = outbox.db
    db.execute("CREATE TABLE public.people (email text PRIMARY KEY, ssn text, full_name text, secret text)")
    emails = ["key.snap%02d@example.com" % i for i in range(5)]
    for e in emails:
        db.execute("INSERT INTO public.people VALUES (%s, 'SSN-K1', 'Key Snap', 's1')", (e,))
    protect = PROTECT.replace('{ columns = ["email"]; tables = ["public.*"]; action = "hash"; }',
                              '{ columns = ["email"]; tables = ["public.*"]; action = "encrypt"; }')
    configure(outbox, tmp_path, protect=protect, extra_relay="snapshot_chunk_rows = 2;")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    outbox.relay.wait_log("snapshot of public.people done: 5 rows", timeout=90)
    db.execute("UPDATE public.people SET full_name = 'Key Snap Two' WHERE email = %s", (emails[0],))
    db.execute("INSERT INTO public.people VALUES ('key.new@example.com', 'SSN-K2', 'Key New', 's2')")
    msgs = kafka.consume([outbox.prefix + ".public.people"], until=7, timeout=60)
    assert len(msgs) == 7
    by_op = {}
    for m in msgs:
        by_op.setdefault(json.loads(m["value"])["op"], []).append(m)
    snap = {json.loads(m["key"])["email"]: m for m in by_op["r"]}
    assert sorted(snap) == sorted(hashed(e) for e in emails)
    for m in by_op["r"]:
        assert decrypt(json.loads(m["value"])["after"]["email"]) in emails  # the value: encrypted
    u = by_op["u"][0]
    assert json.loads(u["key"]) == {"email": hashed(emails[0])}
    assert u["partition"] == snap[hashed(emails[0])]["partition"]
    assert json.loads(by_op["c"][0]["key"]) == {"email": hashed("key.new@example.com")}
    written = everything_written(outbox, kafka, [outbox.prefix + ".public.people"])
    assert b"after_sealed" in written  # the chunked snapshot stored its position, sealed
    leaked = [e for e in emails + ["key.new@example.com"] if e.encode() in written]
    assert not leaked, leaked


def test_a_column_no_captured_table_has_stops_the_relay_at_start(outbox, kafka, tmp_path):
    db = outbox.db
    db.execute("CREATE TABLE public.people (id int PRIMARY KEY, email text)")
    configure(outbox, tmp_path, protect='protect = (\n  { columns = ["email"]; action = "hash"; },\n'
                                        '  { columns = ["emial"]; action = "hash"; }\n);\n')
    relay = relayctl.Relay(outbox.config_path, str(tmp_path / "a"), env=outbox.relay.env)
    os.makedirs(str(tmp_path / "a"), exist_ok=True)
    relay.start()
    assert relay.wait_exit(60) != 0
    line = next(i for i, l in enumerate(open(outbox.config_path), 1) if "emial" in l)
    assert "%s:%d: protect[1].columns: 'emial' is no column of any captured table" % (outbox.config_path, line) \
        in relay.log(), relay.log()
