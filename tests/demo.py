# demo.py: `make demo`: throwaway PostgreSQL and Kafka, the relay, identity events written in SQL, printed from Kafka.
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import relayctl  # noqa: E402

# A legacy table that never writes outbox rows: captured by configuration alone.
LEGACY_SQL = """
CREATE TABLE kyc_checks (id int PRIMARY KEY, user_id text, result text);
INSERT INTO kyc_checks VALUES (1, 'u-0042', 'cleared'), (2, 'u-1001', 'pending');
"""
LEGACY_UPDATE = "UPDATE kyc_checks SET result = 'cleared' WHERE id = 2;"

EVENTS_SQL = """
-- A user registers: the users row and the event commit together.
BEGIN;
CREATE TABLE IF NOT EXISTS users (id text PRIMARY KEY, email text, status text);
INSERT INTO users VALUES ('u-1001', 'ada@example.com', 'registered');
SELECT outbox.publish('user', 'u-1001', 'UserRegistered',
       '{"user_id": "u-1001", "email": "ada@example.com"}',
       '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}');
COMMIT;

-- Her ID document is verified.
BEGIN;
UPDATE users SET status = 'id_verified' WHERE id = 'u-1001';
SELECT outbox.publish('user', 'u-1001', 'IdDocumentVerified',
       '{"user_id": "u-1001", "document": "passport", "country": "NL", "score": 0.987}');
COMMIT;

-- The liveness check passes.
BEGIN;
UPDATE users SET status = 'live' WHERE id = 'u-1001';
SELECT outbox.publish('user', 'u-1001', 'LivenessCheckPassed',
       '{"user_id": "u-1001", "method": "selfie-video", "confidence": 12345678901234567890.123}');
COMMIT;

-- A rolled-back registration publishes nothing.
BEGIN;
SELECT outbox.publish('user', 'u-666', 'UserRegistered', '{"user_id": "u-666"}');
ROLLBACK;

-- An AML screening result for another aggregate type, on its own topic.
SELECT outbox.publish('screening', 'u-1001', 'AmlScreeningCleared', '{"user_id": "u-1001", "lists": ["EU", "UN", "OFAC"]}');
"""


def show_legacy(db, kafka):
    """The captured legacy table: its rows from the snapshot (op r), then a change (op u)."""
    print("\ndemo: a legacy table, captured without code changes (capture = public.kyc_checks):\n")
    for line in LEGACY_SQL.strip().splitlines() + ["-- (the relay starts: a snapshot publishes the rows)",
                                                   LEGACY_UPDATE]:
        print("    " + line)
    db.execute(LEGACY_UPDATE)
    msgs = kafka.consume(["legacy.public.kyc_checks"], until=3, timeout=60)
    print()
    for m in sorted(msgs, key=lambda m: (m["partition"], m["offset"])):
        v = json.loads(m["value"])
        print("  %-26s key=%-9s op=%s after=%s" % (m["topic"], m["key"].decode(), v["op"],
                                                   json.dumps(v["after"])))
    if len(msgs) != 3:
        print("demo: expected 3 change records, got %d" % len(msgs), file=sys.stderr)
        return 1
    return 0


def main():
    print("demo: starting a throwaway PostgreSQL 15 (wal2json) and Kafka (KRaft) on loopback ...", flush=True)
    pg = harness.Postgres()
    kafka = harness.Kafka()
    relay = None
    try:
        pg.start()
        kafka.start()
        db = pg.create_database("identity")
        print("demo: PostgreSQL %s, Kafka %s" % (db.dsn, kafka.bootstrap), flush=True)
        relayctl.install_outbox(db)
        db.execute(LEGACY_SQL)
        work = tempfile.mkdtemp(prefix="outbox-relay-demo-")
        conf = os.path.join(work, "relay.conf")
        relayctl.write_config(conf, db.dsn, kafka.bootstrap, "outbox_relay", "outbox.${aggregate_type}",
                              capture='{ tables = "public.kyc_checks"; }', extra_relay='topic_prefix = "legacy";')
        relay = relayctl.Relay(conf, work).start()
        relay.wait_streaming()
        print("demo: relay streaming (log: %s)" % relay.log_path, flush=True)
        print("demo: writing identity events in SQL transactions:\n", flush=True)
        for line in EVENTS_SQL.strip().splitlines():
            print("    " + line)
        print(flush=True)
        subprocess.run(["psql", "-X", "-q", "-e", "-d", db.dsn], input=EVENTS_SQL.encode(), check=True,
                       stdout=subprocess.DEVNULL)
        print("demo: events as a read_committed consumer sees them in Kafka:\n", flush=True)
        msgs = kafka.consume(["outbox.user", "outbox.screening"], until=4, timeout=60)
        for m in sorted(msgs, key=lambda m: m["timestamp"]):
            headers = {k: v.decode() for k, v in m["headers"]}
            print("  %-17s key=%-7s %-20s %s" % (m["topic"], m["key"].decode(), headers["event_type"],
                                                  m["value"].decode()))
            extra = {k: v for k, v in headers.items() if k not in ("event_type",)}
            print("  %-17s headers %s" % ("", json.dumps(extra)))
        if len(msgs) != 4:
            print("demo: expected 4 events, got %d" % len(msgs), file=sys.stderr)
            return 1
        if show_legacy(db, kafka) != 0:
            return 1
        code = relay.stop()
        print("\ndemo: relay stopped (exit %d); %s" % (code, relay.log().strip().splitlines()[-1]))
        return 0 if code == 0 else 1
    finally:
        if relay:
            relay.kill()
        harness.cleanup_all()


if __name__ == "__main__":
    sys.exit(main())
