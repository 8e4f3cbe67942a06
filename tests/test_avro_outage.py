# Avro: the schema registry frozen for 30 s under continuous writes (new event types, a relay restart with an empty cache): nothing lost, nothing duplicated, memory bounded.
import json
import time

from events import Writers, tally_writers_events
from harness import wait_for
from test_avro import deserializer

HOLDING = "holding back the row of outbox.events"
OUTAGE_S = 30.0


def schema(name):
    """The Avro schema of the writers' payload {"g", "w", "seq"} under a record name."""
    return {"type": "record", "name": name, "namespace": "outage.events",
            "fields": [{"name": "g", "type": "long"}, {"name": "w", "type": "long"},
                       {"name": "seq", "type": "long"}]}


def rss_kb(pid):
    """The relay's resident memory (VmRSS of /proc/PID/status), kB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def held_rss(relay, until):
    """The relay's RSS every second until the monotonic time until (it must not exit: it holds)."""
    pid = relay.proc.pid
    rss = [rss_kb(pid)]
    while time.monotonic() < until:
        assert relay.proc.poll() is None, "the relay exited while held back"
        time.sleep(1.0)
        rss.append(rss_kb(pid))
    return rss


def start_relay(outbox, registry, tmp_path):
    """The outbox source in format avro, schema files for Changed and Opened; registry calls
    time out after 1 s."""
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for name in ("Changed", "Opened"):
        (schemas / (name + ".avsc")).write_text(json.dumps(schema(name), indent=2))
    outbox.reconfigure(
        sources='{ table = "outbox.events"; topic = "%s.${aggregate_type}"; format = "avro"; }' % outbox.prefix,
        extra_top='schema_registry = { url = "%s"; schema_dir = "%s"; timeout_ms = 1000; };'
                  % (registry.url, schemas))
    outbox.relay.start()
    outbox.relay.wait_streaming()


def assert_exactly_once_decoded(kafka, registry, outbox, aggregate, writers, timeout=120):
    """A read_committed consumer of the aggregate's topic, decoding each record by the schema
    its id names (confluent-kafka's AvroDeserializer, which asks the registry): every committed
    event once with its own payload, in per-key order; none rolled back, no phantom."""
    expected = writers.committed
    topic = outbox.topic(aggregate)
    kafka.consume([topic], until=len(expected), timeout=timeout)
    msgs = kafka.consume([topic], timeout=60)  # to the end: duplicates come after the count
    decode = deserializer(registry)

    def payload_is_its_own(m, key, seq):
        payload = decode(m)
        assert payload["seq"] == seq and payload["g"] == writers.gen, (m["headers"], payload)

    dups, lost, rolled_back, phantoms = tally_writers_events(msgs, writers, payload_is_its_own)
    assert (dups, lost, rolled_back, phantoms) == (0, 0, 0, 0), \
        "%s: %d duplicates, %d lost, %d rolled back, %d phantoms of %d" % (
            aggregate, dups, lost, rolled_back, phantoms, len(expected))
    return len(msgs)


def test_a_registry_frozen_30_s_under_writes_loses_and_duplicates_nothing(outbox, kafka, registry, tmp_path):
    """Writers keep committing (and rolling back) while the registry is frozen (SIGSTOP) for
    30 s. The freeze hits schema lookups twice: an event type that begins during it (its subject
    was never registered), and a relay restarted during it (its cache of ids starts empty). The
    stream is held back meanwhile with the relay's memory flat; once the registry answers, every
    committed event is in Kafka exactly once for read_committed consumers, decodable by the id
    it carries."""
    start_relay(outbox, registry, tmp_path)
    changed = Writers(outbox.db, outbox, count=3, pause=0.02)
    opened = Writers(outbox.db, outbox, count=2, gen=1, aggregate="account", event_type="Opened", pause=0.02)
    try:
        changed.start()
        assert kafka.consume([outbox.topic("user")], until=1, timeout=60)  # Changed's id is cached
        mark = len(outbox.relay.log())
        first_before = rss_kb(outbox.relay.proc.pid)  # streaming, its schema ids cached
        registry.pause()
        t_pause = time.monotonic()
        try:
            opened.start()  # a new event type, its subject unknown: the lookup waits for the registry
            outbox.relay.wait_log(HOLDING, timeout=20, since=mark)
            first = held_rss(outbox.relay, t_pause + 8.0)
            # A restart during the outage: the new relay knows no id, Changed's lookup waits too.
            assert outbox.relay.stop() == 0
            mark = len(outbox.relay.log())
            outbox.relay.start()
            outbox.relay.wait_streaming()
            outbox.relay.wait_log(HOLDING, timeout=20, since=mark)
            t_first = time.monotonic()
            rss = held_rss(outbox.relay, t_pause + OUTAGE_S)  # the rest of the outage
            held_s = time.monotonic() - t_first
            # Nothing of the new event type went out while its schema had no id.
            assert kafka.consume([outbox.topic("account")], timeout=2) == []
        finally:
            registry.resume()
        # Memory while held back: flat, whatever the writers add to the WAL meanwhile.
        print("relay RSS %.1f MB streaming, then held back: %s MB; after the restart, held back for %.0f s: %s MB" % (
            first_before / 1024.0, " ".join("%.1f" % (r / 1024.0) for r in first), held_s,
            " ".join("%.1f" % (r / 1024.0) for r in rss)))
        assert max(first) - first_before <= 4096, "RSS grew from %d to %d kB" % (first_before, max(first))
        assert max(rss) - rss[0] <= 4096, "RSS grew from %d to %d kB while held back" % (rss[0], max(rss))
        assert max(rss) <= 64 * 1024
        wait_for(lambda: opened.count() > 0 and changed.count() > 0, 10, what="rows of both writer sets")
        n = changed.count() + opened.count()
        wait_for(lambda: changed.count() + opened.count() >= n + 50, 30, what="writes after the outage")
    finally:
        for w in (changed, opened):
            if w.threads[0].ident is not None:
                w.stop()
    assert assert_exactly_once_decoded(kafka, registry, outbox, "user", changed) > 0
    assert assert_exactly_once_decoded(kafka, registry, outbox, "account", opened) > 0
    # Nothing dead-lettered: a registry that is down holds the stream back, it rejects nothing.
    dead = [m for m in kafka.consume(["outbox-relay.dead-letters"], timeout=10)
            if dict(m["headers"]).get("dlq_topic", b"").startswith(outbox.prefix.encode())]
    assert dead == []
    assert outbox.relay.stop() == 0
