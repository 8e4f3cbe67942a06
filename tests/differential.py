# differential.py: compares the relay's change-capture records with what wal2json printed for each change on a reference slot.
"""The comparison of tests/test_capture_differential.py, mechanical and complete.

wal2json's records come from a reference slot made with the relay's own options; the relay's
from its topics and the dead-letter topic. Every I/U/D/T change of a captured table must be
published exactly as derived here from wal2json's record (operation, key, every value byte for
byte, before, unchanged_toast, source) or dead-lettered with a reason (value: the wal2json record
itself); nothing may be missing or extra, and per key the records keep wal2json's order.
"""
import json
import re

# The options relay/pg_stream.c start_streaming passes (add-tables comes from the capture list).
RELAY_OPTIONS = ["format-version", "2", "include-transaction", "1", "include-xids", "1",
                 "include-timestamp", "1", "include-lsn", "1", "include-domain-data-type", "1"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NUMBER = re.compile(r'-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?')
_WS = re.compile(r'[ \t\r\n]*')


class Node:
    """A JSON value with its raw text: .raw, .kind (object, array, string, number, literal),
    .members (object: [(name, Node)]) or .items (array)."""

    def __init__(self, kind, raw, members=None, items=None):
        self.kind, self.raw, self.members, self.items = kind, raw, members, items

    def get(self, name):
        for k, v in self.members:
            if k == name:
                return v
        return None

    def text(self):
        return json.loads(self.raw)


def parse(text):
    """Parses JSON text keeping the raw text of every value (numbers and escapes as written)."""
    node, i = _value(text, _WS.match(text, 0).end())
    if _WS.match(text, i).end() != len(text):
        raise ValueError("trailing text at %d" % i)
    return node


def _value(s, i):
    c = s[i]
    if c == "{":
        return _container(s, i, "}", True)
    if c == "[":
        return _container(s, i, "]", False)
    m = _STRING.match(s, i) if c == '"' else _NUMBER.match(s, i)
    if m:
        return Node("string" if c == '"' else "number", m.group()), m.end()
    for lit in ("true", "false", "null"):
        if s.startswith(lit, i):
            return Node("literal", lit), i + len(lit)
    raise ValueError("bad JSON at %d: %r" % (i, s[i:i + 20]))


def _container(s, start, close, is_object):
    out, i = [], _WS.match(s, start + 1).end()
    if s[i] == close:
        i += 1
    else:
        while True:
            if is_object:
                m = _STRING.match(s, i)
                name = json.loads(m.group())
                i = _WS.match(s, m.end()).end() + 1  # past ':'
                v, i = _value(s, _WS.match(s, i).end())
                out.append((name, v))
            else:
                v, i = _value(s, i)
                out.append(v)
            i = _WS.match(s, i).end()
            i += 1
            if s[i - 1] == close:
                break
            i = _WS.match(s, i).end()
    raw = s[start:i]
    return (Node("object", raw, members=out) if is_object else Node("array", raw, items=out)), i


def column_value(col):
    """A wal2json column's value as the relay must print it: json and jsonb unescaped into the
    JSON they hold, everything else byte for byte."""
    v = col.get("value")
    if col.get("type").text() in ("json", "jsonb") and v.kind == "string":
        return json.loads(v.raw)
    return v.raw


def fields(change, member):
    """[(name, raw value)] of a change's columns or identity, in wal2json's (column) order."""
    node = change.get(member)
    return [(c.get("name").text(), column_value(c)) for c in node.items] if node else []


def row(pairs):
    return dict(pairs)


class Model:
    """What the test knows of each table at each WAL position: columns and key columns, as the
    catalog said after each DDL (recorded by the stream with the WAL position after its commit)."""

    def __init__(self):
        self.history = {}  # (schema, table) -> [(lsn int, [columns], [key columns])]

    def record(self, schema, table, lsn, columns, keys):
        self.history.setdefault((schema, table), []).append((lsn, columns, keys))

    def at(self, schema, table, lsn):
        best = None
        for entry in self.history.get((schema, table), []):
            if entry[0] <= lsn:
                best = entry
        return best

    def changed_after(self, schema, table, lsn):
        return any(e[0] > lsn for e in self.history.get((schema, table), []))


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def expected_records(change, model, tombstones=True):
    """The relay's records for one wal2json change: [(key dict or None, envelope dict or None)],
    envelope = {op, before, after, unchanged_toast, source} with raw values; None when the test
    does not know the table's key (then only a dead letter can match)."""
    schema, table = change.get("schema").text(), change.get("table").text()
    action = change.get("action").text()
    source = {"lsn": change.get("lsn").text(), "xid": change.get("xid").raw,
              "ts": change.get("timestamp").raw, "schema": schema, "table": table, "snapshot": "false"}
    if action == "T":
        return [(None, {"op": "t", "before": None, "after": None, "toast": "absent", "source": source})]
    known = model.at(schema, table, lsn_int(source["lsn"]))
    if known is None:
        return None
    _, columns, keys = known
    if not keys:
        return None  # a table without a key is refused: only its dead letter matches
    now, old = fields(change, "columns"), fields(change, "identity")
    new_row, old_row = row(now), row(old)

    def key_of(*rows):
        k = {}
        for name in keys:
            vals = [r[name] for r in rows if name in r]
            if not vals:
                return None
            k[name] = vals[0]
        return k

    if action == "I":
        return [(key_of(new_row), {"op": "c", "before": None, "after": new_row, "toast": "absent",
                                    "source": source})]
    if action == "D":
        out = [(key_of(old_row), {"op": "d", "before": old_row, "after": None, "toast": "absent",
                                   "source": source})]
        return out + ([(key_of(old_row), None)] if tombstones else [])
    # An update: the identity is the whole old row when it has an old value for every new one
    # and more than the key (a key-only identity also covers a row whose other columns were all
    # left out as unchanged TOAST). A table of key columns only has its whole row in its key.
    whole = bool(old) and all(n in old_row for n, _ in now) and (
        set(columns) <= set(keys) or any(n not in keys for n in old_row))
    after = dict(new_row)
    after.update((n, v) for n, v in old if n not in new_row)
    toast = [c for c in columns if c not in after]
    upd = (key_of(new_row, old_row), {"op": "u", "before": old_row if whole else None, "after": after,
                                       "toast": toast or "absent", "source": source})
    old_key = key_of(old_row)
    if old and old_key is not None and old_key != upd[0]:
        dele = (old_key, {"op": "d", "before": old_row, "after": None, "toast": "absent", "source": source})
        return [dele] + ([(old_key, None)] if tombstones else []) + [upd]
    return [upd]


def relay_envelope(value):
    """A relay record's envelope in the form of expected_records (raw values)."""
    v = parse(value.decode())

    def obj(name):
        n = v.get(name)
        return None if n.kind == "literal" else {k: x.raw for k, x in n.members}

    src = v.get("source")
    toast = v.get("unchanged_toast")
    return {"op": v.get("op").text(), "before": obj("before"), "after": obj("after"),
            "toast": "absent" if toast is None else ("unknown" if toast.raw == "null" else toast.text()),
            "source": {"lsn": src.get("lsn").text(), "xid": src.get("xid").raw, "ts": src.get("ts").raw,
                       "schema": src.get("schema").text(), "table": src.get("table").text(),
                       "snapshot": src.get("snapshot").raw}}


def relay_key(key):
    return None if key is None else {k: x.raw for k, x in parse(key.decode()).members}


class Comparison:
    """The outcome: counts and, for anything that is neither matched nor dead-lettered, why."""

    def __init__(self):
        self.compared = self.matched = self.dead_lettered = self.unknown_toast = 0
        self.problems = []
        self.unknown_tables = []  # where the relay said it cannot know unchanged_toast
        self.dead_tables = []  # the tables whose changes were dead-lettered

    def summary(self):
        return ("changes compared %d, matched %d, dead-lettered %d, unchanged_toast unknown %d, "
                "other %d%s" % (self.compared, self.matched, self.dead_lettered, self.unknown_toast,
                                len(self.problems), " (in %s)" % sorted(set(self.unknown_tables))
                                if self.unknown_tables else ""))


def compare(changes, published, dead, partitions, model, captured, tombstones=True):
    """changes: wal2json records (text) of the reference slot, in order; published: the relay's
    records [{topic, partition, offset, key, value}] of the capture topics; dead: its dead letters;
    partitions(topic) -> count; captured(schema, table) -> topic or None."""
    res = Comparison()
    pool = {}  # (lsn, xid) -> relay records not yet matched
    for m in published:
        if m["value"] is None:
            continue
        env = relay_envelope(m["value"])
        pool.setdefault((env["source"]["lsn"], env["source"]["xid"]), []).append((m, env))
    tombs = {}
    for m in published:
        if m["value"] is None:
            tombs[(m["topic"], m["key"])] = tombs.get((m["topic"], m["key"]), 0) + 1
    letters = list(dead)
    order = {}  # (topic, partition, key) -> [(offset, change index)]
    want_tombs = {}
    for index, text in enumerate(changes):
        change = parse(text)
        action = change.get("action").text()
        if action not in ("I", "U", "D", "T"):
            continue
        schema, table = change.get("schema").text(), change.get("table").text()
        topic = captured(schema, table)
        if topic is None:
            continue
        res.compared += 1
        lsn, xid = change.get("lsn").text(), change.get("xid").raw
        letter = _take_letter(letters, lsn, xid, text)
        want = expected_records(change, model, tombstones)
        got = _take_records(pool.get((lsn, xid), []), want, topic, partitions, model, change) \
            if want is not None and letter is None else None
        if letter is not None:
            res.dead_lettered += 1
            res.dead_tables.append(table)
            continue
        if got is None:
            res.problems.append("%s %s.%s at %s: not published as wal2json says, nor dead-lettered:\n"
                                "  wal2json %s\n  expected %s\n  relay    %s"
                                % (action, schema, table, lsn, text[:600], str(want)[:600],
                                   str([e for _, e in pool.get((lsn, xid), [])][:3])[:600]))
            continue
        res.matched += 1
        unknown = [e["source"]["table"] for _, e in got if e["toast"] == "unknown"]
        res.unknown_toast += len(unknown)
        res.unknown_tables.extend(unknown)
        for m, env in got:
            order.setdefault((m["topic"], m["partition"], m["key"]), []).append((m["offset"], index))
        for k, env in (want or []):
            if env is None:
                tk = (topic, _key_bytes_of(got, k))
                want_tombs[tk] = want_tombs.get(tk, 0) + 1
    for recs in pool.values():
        for m, env in recs:
            res.problems.append("extra relay record on %s: %s" % (m["topic"], m["value"][:300]))
    for m in letters:
        res.problems.append("extra dead letter: %s %s" % (dict(m["headers"]), m["value"][:300]))
    if tombs != want_tombs:
        res.problems.append("tombstones per key differ: relay %s, expected %s" % (tombs, want_tombs))
    for (topic, part, key), seq in order.items():
        if [i for _, i in sorted(seq)] != sorted(i for _, i in seq):
            res.problems.append("records of key %s on %s[%d] out of wal2json's order" % (key, topic, part))
    return res


def _key_bytes_of(got, key):
    for m, env in got:
        if relay_key(m["key"]) == key:
            return m["key"]
    return None


def _take_letter(letters, lsn, xid, text):
    """The dead letter of this change (its value is wal2json's record, cut to 64 KiB), removed."""
    data = text.encode()
    for i, m in enumerate(letters):
        h = dict(m["headers"])
        if h.get("dlq_lsn", b"").decode() == lsn and h.get("dlq_xid", b"").decode() == xid \
                and data.startswith(m["value"]) and h.get("dlq_reason") \
                and (len(m["value"]) == len(data) or int(h.get("dlq_truncated_from", b"0")) == len(data)):
            return letters.pop(i)
    return None


def _take_records(recs, want, topic, partitions, model, change):
    """Removes from recs the relay records equal to want (a truncate once per partition); None,
    leaving recs as they were, when one is missing. An unchanged_toast the relay says it cannot
    know is accepted only where the table's columns changed after the change."""
    taken = []
    for key, env in want:
        if env is None:
            continue
        copies = partitions(topic) if env["op"] == "t" else 1
        for _ in range(copies):
            hit = None
            for j, (m, got) in enumerate(recs):
                if m["topic"] == topic and relay_key(m["key"]) == key and _same(got, env, model, change):
                    hit = j
                    break
            if hit is None:
                recs.extend(taken)
                return None
            taken.append(recs.pop(hit))
    return taken


def _same(got, env, model, change):
    if got["toast"] == "unknown" and env["op"] == "u":
        later = model.changed_after(env["source"]["schema"], env["source"]["table"],
                                    lsn_int(env["source"]["lsn"]))
        return later and dict(got, toast=None) == dict(env, toast=None)
    return got == env
