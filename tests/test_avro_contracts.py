# Contracts of outbox events: JSON checked against Avro schema files, schema versions per event, the start-time compatibility check and subject naming strategies, against a real registry (Apicurio).
import json
import struct
import time

import pytest

from harness import wait_for
from test_avro import DLQ, OPENED, insert

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
    msgs = kafka.consume([outbox.topic("account")], until=2, timeout=60)
    time.sleep(1)
    msgs = kafka.consume([outbox.topic("account")], timeout=10)
    stored = [r[0] for r in outbox.db.query(
        "SELECT payload::text FROM outbox.events WHERE payload->>'seq' IN ('1', '4') ORDER BY seq")]
    assert [m["value"] for m in msgs] == [t.encode() for t in stored]  # byte for byte
    assert "schema_id" not in dict(msgs[0]["headers"])
    assert outbox.relay.stop() == 0


def test_a_contract_needs_a_schema_dir_but_no_registry(tmp_path):
    import relayctl
    d = schema_dir(tmp_path, {"AccountOpened.avsc": OPENED})
    path = tmp_path / "relay.conf"
    base = ('postgresql = { conninfo = "x"; };\nkafka = { bootstrap_servers = "b"; };\n'
            'sources = ( { table = "outbox.events"; contract = true; } );\n')
    path.write_text(base)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 2 and "contract = true needs schema_registry.schema_dir" in out, out
    path.write_text(base + 'schema_registry = { schema_dir = "%s"; };\n' % d)
    code, out = relayctl.run_once(["check-config", str(path)])
    assert code == 0, out
