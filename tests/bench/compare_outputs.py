# compare_outputs.py: checks that two sets of outbox topics hold the same topic, partition, key and value per event.
"""Reads both outputs with read_committed and compares them as sets keyed by event id.

The topics of each side differ only by a prefix (<prefix>.<aggregate_type>): the topic is
compared by what follows its prefix. Values are compared byte for byte and, where the bytes
differ, as parsed JSON. The first side is held in memory as short digests (about 150 bytes an
event), the second is streamed against it.
"""

import hashlib
import json
import time
import uuid

DIGEST = 8  # bytes of each digest: collisions are not a concern at a few million events


def _digest(data):
    return hashlib.blake2b(data, digest_size=DIGEST).digest()


def _canonical(value):
    """The value as sorted, compact JSON (bytes), or the raw bytes when it is not JSON."""
    try:
        return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, TypeError):
        return value or b""


def _header(msg, name):
    for k, v in msg.headers() or []:
        if k == name:
            return v.decode() if v is not None else None
    return None


def read_committed(bootstrap, topics, timeout=600):
    """Yields every committed record of all partitions of topics, up to their ends."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compare-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "isolation.level": "read_committed",
                  "enable.partition.eof": True, "log_level": 0, "error_cb": lambda e: None})
    md = c.list_topics(timeout=30)
    parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in md.topics[t].partitions]
    c.assign(parts)
    eof = set()
    deadline = time.monotonic() + timeout
    try:
        while len(eof) < len(parts):
            if time.monotonic() > deadline:
                raise RuntimeError("reading %s: no end after %d s" % (", ".join(topics), timeout))
            for m in c.consume(num_messages=10000, timeout=0.5):
                if m.error() is None:
                    eof.discard((m.topic(), m.partition()))
                    yield m
                elif m.error().code() == KafkaError._PARTITION_EOF:
                    eof.add((m.topic(), m.partition()))
    finally:
        c.close()


class Side:
    """One producer's output: its topics' common prefix and the header holding the event id."""

    def __init__(self, name, prefix, topics, id_header):
        self.name = name
        self.prefix = prefix
        self.topics = topics
        self.id_header = id_header
        self.headers_seen = None

    def entry(self, m):
        """(event id, route digest, raw value digest, canonical value digest) of one record."""
        if self.headers_seen is None:
            self.headers_seen = [k for k, _ in m.headers() or []]
        suffix = m.topic()[len(self.prefix) + 1:]
        route = b"%s\0%d\0%s" % (suffix.encode(), m.partition(), m.key() or b"\1null")
        value = m.value()
        return _header(m, self.id_header), _digest(route), _digest(value or b""), _digest(_canonical(value))


def _load(bootstrap, side):
    """{event id: route+raw+canonical digests} of one side, and how many ids came twice or without id."""
    held, dups, no_id = {}, 0, 0
    for m in read_committed(bootstrap, side.topics):
        eid, route, raw, canon = side.entry(m)
        if eid is None:
            no_id += 1
            continue
        dups += eid in held
        held[eid] = route + raw + canon
    return held, dups, no_id


def _example(m):
    return {"topic": m.topic(), "partition": m.partition(), "key": (m.key() or b"").decode(errors="replace"),
            "value": (m.value() or b"")[:300].decode(errors="replace")}


def compare(bootstrap, first, second, examples=3):
    """Compares two Sides; returns counts of every kind of difference (all 0: the same events)."""
    held, dups1, no_id1 = _load(bootstrap, first)
    out = {"events": {first.name: len(held)}, "duplicates": {first.name: dups1}, "without_id": {first.name: no_id1},
           "missing_in_" + second.name: 0, "only_in_" + second.name: 0, "route_differs": 0,
           "value_bytes_differ": 0, "value_json_differs": 0, "examples": []}
    seen, n, dups2, no_id2 = set(), 0, 0, 0
    for m in read_committed(bootstrap, second.topics):
        eid, route, raw, canon = second.entry(m)
        if eid is None:
            no_id2 += 1
            continue
        n += 1
        dups2 += eid in seen
        seen.add(eid)
        _tally(out, held.get(eid), route + raw + canon, second.name, m, examples)
    out["missing_in_" + second.name] = len(set(held) - seen)
    out["events"][second.name] = len(seen)
    out["duplicates"][second.name] = dups2
    out["without_id"][second.name] = no_id2
    out["headers"] = {first.name: first.headers_seen, second.name: second.headers_seen}
    out["same"] = all(out[k] == 0 for k in ("missing_in_" + second.name, "only_in_" + second.name,
                                              "route_differs", "value_json_differs"))
    return out


def _tally(out, want, have, second_name, m, examples):
    """Counts how one record of the second side differs from the first side's record of its id."""
    if want is None:
        out["only_in_" + second_name] += 1
        bad = True
    else:
        route, raw, canon = (slice(0, DIGEST), slice(DIGEST, 2 * DIGEST), slice(2 * DIGEST, 3 * DIGEST))
        out["route_differs"] += want[route] != have[route]
        out["value_bytes_differ"] += want[raw] != have[raw]
        out["value_json_differs"] += want[canon] != have[canon]
        bad = want[route] != have[route] or want[raw] != have[raw]
    if bad and len(out["examples"]) < examples:
        out["examples"].append(_example(m))
