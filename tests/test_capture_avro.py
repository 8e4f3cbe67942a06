# test_capture_avro.py: captured tables in Avro: the derived schema, every type against the JSON envelope, snapshots, schema changes, a registry that is down.
import datetime
import decimal
import io
import json
import re
import struct

import pytest

from harness import wait_for

# Every type the JSON capture tests cover, plus the ones the Avro mapping names.
COLUMNS = """(id bigint PRIMARY KEY, n numeric, n2 numeric(30,9), f8 float8, r real, bo boolean,
    by bytea, j json, jb jsonb, tarr text[], iarr int[], ts timestamptz, tsn timestamp, d date,
    t time, ch char(5), vc varchar(10), u uuid, tx text, iv interval, sm smallint, i4 integer,
    o oid, m public.mood, dj public.doc, dp public.posint, "Col With Space" text, "ключ" int,
    "q""uote" text, nn int NOT NULL DEFAULT 7, ia2 int[][], ta2 text[][], ivarr interval[],
    narr numeric[], r4 int4range, r8 int8range, nr numrange, tsr tsrange, tzr tstzrange,
    dr daterange, rarr int4range[], mo money)"""

ROWS = [
    (1, "12345678901234567890.123456789", "-123456789012345678901.000000001", 0.1, 1.5, True,
     b"\x00\xff\x10", '{"k" : "v\\u0001", "e": "\\u00e9"}', '{"a": [1, 2.50, "x"], "n": null}',
     ["a", "b c", 'q"', None], [1, None, 3], "2026-11-22 10:00:00.123456+00", "2026-11-22 10:00:00",
     "2026-11-22", "23:59:59.999999", "ab", "tab\there", "00000000-0000-0000-0000-000000000001",
     "line\nbreak \\ \"quoted\" \u2028 \U0001F600 \x01", "1 day 02:03:04", -3, 2147483647, 42, "happy",
     '{"doc": [1, "x"]}', 5, "space", 7, "quo\"te", 1,
     "{{1,NULL},{3,4}}", '{{a,"b c"},{NULL,"q\\\\\\"\\\\\\\\"}}', '{"1 year 2 mons 3 days 04:05:06.789","-00:00:01",NULL}',
     "{1.50,NaN,NULL,-12345678901234567890.5}", "[1,5)", "(,9223372036854775807)", "[-1.5,2.25]",
     "[2026-01-01 00:00:00,2026-01-02 00:00:00.5)", "[2026-01-01 00:00:00+00,2027-01-01 00:00:00+00)", "[2026-01-01,)",
     '{"[1,2)",empty,NULL}', "12.34"),
    (2, "NaN", "0.5", float("inf"), float("-inf"), False, b"", "null", "[]", [], [], "infinity",
     "-infinity", "-infinity", "00:00:00", "abcde", "", "ffffffff-ffff-ffff-ffff-ffffffffffff", "",
     "-1 mons", -32768, -2147483648, 0, "sad", "null", 1, None, None, None, 2,
     "{}", "{{NULL}}", "{}", "{}", "empty", "(,)", "(,)", "empty", "(-infinity,infinity]", "empty", "{}", "-0.01"),
    (9223372036854775807, "-0.000000000000000000001", None, 1e308, 3.4e38, None, None, None, None,
     None, None, "0044-03-15 12:00:00+00 BC", "10000-01-01 00:00:00", "0001-01-01 BC", "24:00:00",
     None, None, None, None, "-1000 years -7 mons -100000 days -1000000:00:00.000001",
     None, None, None, None, None, None, None, None, None, 3,
     None, None, None, None, None, None, None, None, None, None, None, None),
]


def create_types(db, tables):
    db.execute("CREATE TYPE public.mood AS ENUM ('sad', 'happy')")
    db.execute("CREATE DOMAIN public.doc AS jsonb")
    db.execute("CREATE DOMAIN public.posint AS int CHECK (VALUE > 0)")
    for t in tables:
        db.execute("CREATE TABLE public.%s %s" % (t, COLUMNS))


def insert_rows(db, tables, rows=ROWS):
    """Each row into each table, in one transaction per row (the same values everywhere)."""
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    for r in rows:
        for t in tables:
            cur.execute("INSERT INTO public.%s VALUES (%s)" % (t, ", ".join(["%s"] * len(r))), r)
        conn.commit()
    conn.close()


def both(db, sql, tables=("tj", "ta")):
    """One statement on each table, in one transaction (the same xid and commit time)."""
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    for t in tables:
        cur.execute(sql % t)
    conn.commit()
    conn.close()


def start(outbox, registry, capture, extra_registry="", extra_relay="", extra_top=""):
    outbox.reconfigure(capture=capture, extra_relay='topic_prefix = "%s"; %s' % (outbox.prefix, extra_relay),
                       extra_top='schema_registry = { url = "%s"; %s };\n%s' % (registry.url, extra_registry, extra_top))
    outbox.relay.start()
    outbox.relay.wait_streaming()


def start_dead_lettering(outbox, registry, capture, **extra):
    """start() with the dead-letter topic <prefix>.dlq, which it returns."""
    dlq = outbox.prefix + ".dlq"
    extra["extra_relay"] = 'dead_letter_topic = "%s"; %s' % (dlq, extra.get("extra_relay", ""))
    start(outbox, registry, capture, **extra)
    return dlq


# ---- an independent decoder: fastavro with the writer schema the wire header names ----

def writer_schema(registry, value):
    assert value[0] == 0, "not the Confluent wire format"
    sid = struct.unpack(">I", value[1:5])[0]
    status, body = registry.request("GET", "/schemas/ids/%d" % sid)
    assert status == 200, body
    return sid, json.loads(body["schema"])


def strip_logical(s):
    """The schema without logical types: raw ints, longs and bytes (infinity needs no datetime)."""
    if isinstance(s, list):
        return [strip_logical(x) for x in s]
    if isinstance(s, dict):
        return {k: strip_logical(v) for k, v in s.items() if k != "logicalType"}
    return s


def decode(registry, value, logical=False, reader=None):
    import fastavro
    sid, schema = writer_schema(registry, value)
    w = fastavro.parse_schema(schema if logical else strip_logical(schema))
    r = fastavro.parse_schema(reader) if reader else None
    return fastavro.schemaless_reader(io.BytesIO(value[5:]), w, r)


def row_types(registry, value):
    """{field name: (its Avro type without the null branch, the column's name)} of the row record."""
    _, schema = writer_schema(registry, value)
    row = [f for f in schema["fields"] if f["name"] == "before"][0]["type"][1]
    named_types(row, NAMED)
    out = {}
    for f in row["fields"]:
        t = f["type"]
        nullable = isinstance(t, list)
        out[f.get("pg_column", f["name"])] = (f["name"], t[1] if nullable else t, nullable)
    return out


# ---- what the JSON envelope's values become in Avro (the mapping of docs/schemas.md) ----

EPOCH = datetime.date(1970, 1, 1)


def civil_days(y, m, d):
    """Days since 1970-01-01, proleptic Gregorian, any year (Python's date stops at 9999)."""
    y -= m <= 2
    era = y // 400  # floor division, as the C version gets with (y - 399) / 400 below 0
    yoe = y - era * 400
    doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def pg_days(text):
    if text in ("infinity", "-infinity"):
        return 2**31 - 1 if text == "infinity" else -2**31
    bc = text.endswith(" BC")
    y, m, d = (int(x) for x in text.replace(" BC", "").split("-"))
    return civil_days(1 - y if bc else y, m, d)


def pg_micros_of_day(text):
    h, mi, s = text.split(":")
    sec, _, frac = s.partition(".")
    return ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1000000 + int((frac + "000000")[:6])


def pg_timestamp(text, with_zone):
    if text in ("infinity", "-infinity"):
        return 2**63 - 1 if text == "infinity" else -2**63
    bc = text.endswith(" BC")
    text = text.replace(" BC", "")
    date, clock = text.split(" ")
    offset = 0
    if with_zone:
        sign = -1 if "-" in clock else 1
        clock, zone = clock.replace("-", "+").split("+")
        parts = [int(x) for x in zone.split(":")] + [0, 0]
        offset = sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])
    y, m, d = (int(x) for x in date.split("-"))
    days = civil_days(1 - y if bc else y, m, d)
    return days * 86400000000 + pg_micros_of_day(clock) - offset * 1000000


def pg_array(text):
    """PostgreSQL's array text, nested to its dimensions: element texts, None for NULL."""
    pos = 0

    def level():
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        out = []
        if text[pos] == "}":
            pos += 1
            return out
        while True:
            if text[pos] == "{":
                out.append(level())
            elif text[pos] == '"':
                pos += 1
                el = ""
                while text[pos] != '"':
                    if text[pos] == "\\":
                        pos += 1
                    el += text[pos]
                    pos += 1
                pos += 1
                out.append(el)
            else:
                end = min(i for i in (text.find(",", pos), text.find("}", pos)) if i >= 0)
                el = text[pos:end]
                out.append(None if el == "NULL" else el)
                pos = end
            pos += 1
            if text[pos - 1] == "}":
                return out

    out = level()
    assert pos == len(text), text
    return out


def pg_interval(text):
    """IntervalStyle postgres's text: PostgreSQL's months, days and microseconds."""
    months = days = micros = 0
    for n, unit in re.findall(r"([+-]?\d+) (year|mon|day)s?", text):
        months += int(n) * 12 if unit == "year" else int(n) if unit == "mon" else 0
        days += int(n) if unit == "day" else 0
    clock = re.search(r"([+-]?)(\d+):(\d\d):(\d\d)(?:\.(\d+))?$", text)
    if clock:
        sign, h, mi, sec, frac = clock.groups()
        micros = ((int(h) * 60 + int(mi)) * 60 + int(sec)) * 1000000 + int(((frac or "") + "000000")[:6])
        micros = -micros if sign == "-" else micros
    return {"months": months, "days": days, "microseconds": micros}


def pg_range(text):
    """A range's text: bound texts (None: unbounded) and its flags."""
    if text == "empty":
        return None, None, False, False, True
    bounds, cur, quoted, i, body = [], None, False, 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\":
            i += 1
            cur = (cur or "") + body[i]
        elif c == '"' and quoted and body[i + 1:i + 2] == '"':
            i += 1
            cur += '"'
        elif c == '"':
            quoted = not quoted
            cur = cur or ""
        elif c == "," and not quoted:
            bounds.append(cur)
            cur = None
        else:
            cur = (cur or "") + c
        i += 1
    bounds.append(cur)
    return bounds[0], bounds[1], text[0] == "[", text[-1] == "]", False


def variable_scale(v):
    """numeric without typmod: {scale: its fraction digits as printed, value: the unscaled bytes}."""
    d = decimal.Decimal(str(v))
    scale = max(0, -d.as_tuple().exponent)
    unscaled = int(d.scaleb(scale, context=decimal.Context(prec=1000)))
    return {"scale": scale, "value": unscaled.to_bytes((unscaled.bit_length() + 8) // 8 or 1, "big", signed=True)}


def named_types(schema, out=None):
    """{full name: definition} of the named records a schema defines."""
    out = {} if out is None else out
    if isinstance(schema, list):
        for x in schema:
            named_types(x, out)
    elif isinstance(schema, dict):
        if schema.get("type") == "record" and "namespace" in schema:
            out["%s.%s" % (schema["namespace"], schema["name"])] = schema
        for k in ("type", "items", "fields"):
            if k in schema:
                named_types(schema[k], out)
    return out


NAMED = {}  # filled by row_types: the named records of the schemas seen


def resolve(t):
    return NAMED.get(t, t) if isinstance(t, str) else t


def scalar_expected(avro_type, v, element=False):
    """The raw (logical types stripped) Avro value of one JSON envelope value or array element."""
    avro_type = resolve(avro_type)
    name = avro_type.get("name") if isinstance(avro_type, dict) else None
    if name == "VariableScaleDecimal":
        return None if v in ("NaN", "Infinity", "-Infinity") else variable_scale(v)
    if name == "Interval":
        return pg_interval(v)
    if name and name.endswith("Range"):
        lower, upper, lo_inc, up_inc, empty = pg_range(v)
        bound = avro_type["fields"][0]["type"][1]
        return {"lower": None if lower is None else scalar_expected(bound, lower, True),
                "upper": None if upper is None else scalar_expected(bound, upper, True),
                "lower_inclusive": lo_inc, "upper_inclusive": up_inc, "empty": empty}
    logical = avro_type.get("logicalType") if isinstance(avro_type, dict) else None
    base = avro_type["type"] if isinstance(avro_type, dict) else avro_type
    if logical == "decimal":
        exact = decimal.Context(prec=1000)  # the default 28 digits would round
        unscaled = int(decimal.Decimal(str(v)).scaleb(avro_type["scale"], context=exact))
        return unscaled.to_bytes((unscaled.bit_length() + 8) // 8 or 1, "big", signed=True)
    if logical == "date":
        return pg_days(v)
    if logical in ("timestamp-micros", "local-timestamp-micros"):
        return pg_timestamp(v, logical == "timestamp-micros")
    if logical == "time-micros":
        return pg_micros_of_day(v)
    if base == "boolean":
        return v in (True, "t")
    if base == "bytes":
        return bytes.fromhex(v[2:] if element else v)
    if base in ("int", "long"):
        return int(v)
    if base in ("float", "double"):
        return float(v)
    return v


def expected_value(avro_type, v, is_json):
    """What the Avro field holds for a JSON envelope value v of a column."""
    if v is None:
        return None
    if isinstance(avro_type, dict) and avro_type.get("type") == "array":
        item = avro_type["items"]
        while isinstance(item, dict) and item.get("type") == "array":
            item = item["items"]  # a dimension more
        nested = lambda e: (None if e is None else [nested(x) for x in e] if isinstance(e, list)
                            else scalar_expected(item[1], e, True))
        return nested(pg_array(v))
    if is_json:
        return v  # compared as parsed JSON below
    if avro_type == "string" and not isinstance(v, str):
        return json.dumps(v)
    return scalar_expected(avro_type, v)


def assert_row_matches(types, avro_row, json_row, json_cols):
    assert (avro_row is None) == (json_row is None), (avro_row, json_row)
    if json_row is None:
        return
    for col, (field, avro_type, nullable) in types.items():
        got = avro_row[field]
        if col not in json_row:
            assert got is None and nullable, col
            continue
        want = expected_value(avro_type, json_row[col], col in json_cols)
        if col in json_cols and got is not None:
            got = json.loads(got, parse_float=decimal.Decimal)
        if avro_type == "float" and want is not None:
            want = struct.unpack("<f", struct.pack("<f", want))[0]
        assert got == want, "column %s: Avro %r, JSON %r" % (col, got, json_row[col])


def assert_envelope_matches(registry, avro_msg, json_msg, own=("lsn",)):
    """own: source fields that differ between the two tables (the WAL position; a snapshot
    chunk's time too, each table's chunk ends in its own transaction)."""
    a = decode(registry, avro_msg["value"])
    j = json.loads(json_msg["value"], parse_float=decimal.Decimal)
    types = row_types(registry, avro_msg["value"])
    json_cols = {"j", "jb", "dj"}
    assert a["op"] == j["op"]
    assert_row_matches(types, a["before"], j["before"], json_cols)
    assert_row_matches(types, a["after"], j["after"], json_cols)
    # The two tables differ by name, and their changes by WAL position only.
    src = dict(j["source"], table=a["source"]["table"], **{f: a["source"][f] for f in own})
    assert a["source"] == src and "/" in a["source"]["lsn"]
    assert a["unchanged_toast"] == j.get("unchanged_toast", [])
    assert avro_msg["key"] == json_msg["key"]  # the key stays the JSON the format builds
    return a


def consume_both(kafka, prefix, n, tables=("tj", "ta")):
    out = []
    for t in tables:
        msgs = kafka.consume("%s.public.%s" % (prefix, t), until=n, timeout=90)
        assert len(msgs) >= n, "got %d of %d records of %s" % (len(msgs), n, t)
        out.append(sorted(msgs, key=lambda m: (m["partition"], m["offset"])))
    return out


def by_key_order(msgs):
    """Records in the order they were produced per key (partition, offset) as a list."""
    return [m for m in sorted(msgs, key=lambda m: (m["timestamp"], m["partition"], m["offset"]))]


CAPTURE_PAIR = ('{ tables = "public.tj"; snapshot = false; }, '
                '{ tables = "public.ta"; snapshot = false; format = "avro"; }')


def test_every_type_decodes_to_what_the_json_envelope_of_the_same_change_says(outbox, kafka, registry):
    """Two tables of every type, one captured in JSON, one in Avro, get the same changes:
    inserts, an update, a key change and a delete. fastavro, with the writer schema the wire
    header's id names, decodes each Avro record to the JSON envelope's values by the mapping."""
    db = outbox.db
    create_types(db, ["tj", "ta"])
    start(outbox, registry, CAPTURE_PAIR)
    insert_rows(db, ["tj", "ta"])
    both(db, "UPDATE public.%s SET tx = 'changed', jb = '{\"b\": 1}', n = 1.50 WHERE id = 1")
    both(db, "UPDATE public.%s SET id = 4 WHERE id = 2")  # a key change: delete + create
    both(db, "DELETE FROM public.%s WHERE id = 4")
    # 3 inserts, 1 update, key change (delete, tombstone, update), delete + tombstone
    js, avs = consume_both(kafka, outbox.prefix, 9)
    by_key = lambda msgs: sorted(msgs, key=lambda m: (m["key"], m["partition"], m["offset"]))
    js, avs = by_key(js), by_key(avs)
    assert len(js) == len(avs)
    subject = "%s.public.ta-value" % outbox.prefix
    for jm, am in zip(js, avs):
        if jm["value"] is None:
            assert am["value"] is None and am["key"] == jm["key"]  # a tombstone stays one
            assert not {"schema_id", "schema_subject"} & set(dict(am["headers"] or [])), am["headers"]
            continue
        assert_envelope_matches(registry, am, jm)
        headers = dict(am["headers"])
        assert headers["schema_subject"] == subject.encode()
        assert int(headers["schema_id"]) == struct.unpack(">I", am["value"][1:5])[0]
    # The derived schema: names, nullability, logical types (the mapping table of docs/schemas.md).
    status, latest = registry.request("GET", "/subjects/%s/versions/latest" % subject)
    assert status == 200 and latest["version"] == 1
    schema = json.loads(latest["schema"])
    assert schema["name"] == "Envelope" and schema["namespace"] == "%s.public.ta" % outbox.prefix
    types = row_types(registry, avs[0]["value"])
    assert types["id"] == ("id", "long", False)  # the key: NOT NULL in every before and after
    assert types["nn"] == ("nn", "int", True)  # NOT NULL, but a delete's before holds only the key
    assert types["n"][1] == {"type": "record", "name": "VariableScaleDecimal", "namespace": "outbox_relay",
                             "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}]}
    assert types["narr"][1] == {"type": "array", "items": ["null", "outbox_relay.VariableScaleDecimal"]}
    assert types["n2"][1]["logicalType"] == "decimal"
    assert (types["n2"][1]["precision"], types["n2"][1]["scale"]) == (30, 9)
    assert types["ts"][1] == {"type": "long", "logicalType": "timestamp-micros"}
    assert types["tsn"][1] == {"type": "long", "logicalType": "local-timestamp-micros"}
    assert types["t"][1] == {"type": "long", "logicalType": "time-micros"}
    assert types["d"][1] == {"type": "int", "logicalType": "date"}
    assert types["u"][1] == {"type": "string", "logicalType": "uuid"}
    assert types["iarr"][1] == {"type": "array", "items": ["null", "int"]}
    assert types["m"][1] == "string" and types["mo"][1] == "string" and types["dp"][1] == "int"
    assert [f["name"] for f in types["iv"][1]["fields"]] == ["months", "days", "microseconds"]
    assert types["ia2"][1] == {"type": "array", "items": {"type": "array", "items": ["null", "int"]}}
    assert types["r4"][1]["name"] == "Int4Range" and types["rarr"][1]["items"][1] == "outbox_relay.Int4Range"
    assert types["nr"][1]["fields"][1] == {"name": "upper", "type": ["null", "outbox_relay.VariableScaleDecimal"]}
    assert types["tzr"][1]["fields"][0]["type"][1] == {"type": "long", "logicalType": "timestamp-micros"}
    assert types["Col With Space"][0] == "Col_With_Space" and types["ключ"][0].startswith("_")
    # A consumer with logical types on gets Python's types for an ordinary row.
    first = [am for jm, am in zip(js, avs) if jm["value"] and json.loads(jm["value"])["op"] == "c"
             and json.loads(jm["value"])["after"]["id"] == 1][0]
    after = decode(registry, first["value"], logical=True)["after"]
    assert after["ts"] == datetime.datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    assert after["n2"] == decimal.Decimal("-123456789012345678901.000000001")
    assert after["d"] == datetime.date(2026, 11, 22) and str(after["u"]) == "00000000-0000-0000-0000-000000000001"
    assert after["iv"] == {"months": 0, "days": 1, "microseconds": (2 * 3600 + 3 * 60 + 4) * 1000000}
    assert after["ia2"] == [[1, None], [3, 4]] and after["ivarr"][1]["microseconds"] == -1000000
    assert after["r4"] == {"lower": 1, "upper": 5, "lower_inclusive": True, "upper_inclusive": False, "empty": False}
    assert after["r8"]["lower"] is None and after["nr"]["lower"] == {"scale": 1, "value": b"\xf1"}
    # A standard client, confluent-kafka's AvroDeserializer, reads the named records alike.
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    deser = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    std = deser(first["value"], SerializationContext(first["topic"], MessageField.VALUE))["after"]
    for col in ("n", "iv", "ivarr", "ia2", "ta2", "narr", "r4", "nr", "tzr", "rarr", "mo"):
        assert std[col] == after[col], col
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert versions == [1]  # a steady table: one registration
    assert outbox.relay.stop() == 0


def test_snapshot_rows_of_an_avro_capture_are_avro(outbox, kafka, registry):
    """Rows there before the capture starts are published by the snapshot (op r) in Avro, with
    the same values as a JSON capture's snapshot of the same rows."""
    db = outbox.db
    create_types(db, ["tj", "ta"])
    insert_rows(db, ["tj", "ta"])
    start(outbox, registry, '{ tables = "public.tj"; }, { tables = "public.ta"; format = "avro"; }')
    js, avs = consume_both(kafka, outbox.prefix, len(ROWS))
    key = lambda m: m["key"]
    for jm, am in zip(sorted(js, key=key), sorted(avs, key=key)):
        a = assert_envelope_matches(registry, am, jm, own=("lsn", "ts"))
        assert a["op"] == "r" and a["source"]["snapshot"] is True
    assert outbox.relay.stop() == 0


def test_a_nullable_column_added_under_a_running_relay_registers_a_new_version(outbox, kafka, registry):
    """ALTER TABLE ADD COLUMN (nullable) while the relay runs: the next change registers version 2
    (BACKWARD compatible: the field is nullable with default null); each record decodes by its
    own writer schema, and a consumer reading with version 2 decodes the version 1 record too.
    A column renamed, then one dropped, make versions 3 and 4."""
    db = outbox.db
    db.execute("CREATE TABLE public.acct (id int PRIMARY KEY, owner text NOT NULL)")
    start(outbox, registry, '{ tables = "public.acct"; snapshot = false; format = "avro"; }')
    topic = "%s.public.acct" % outbox.prefix
    db.execute("INSERT INTO public.acct VALUES (1, 'ann')")
    first = kafka.consume(topic, until=1, timeout=60)
    db.execute("ALTER TABLE public.acct ADD COLUMN note text")
    db.execute("INSERT INTO public.acct VALUES (2, 'bob', 'hi')")
    msgs = kafka.consume(topic, until=2, timeout=60)
    assert len(first) == 1 and len(msgs) == 2
    msgs.sort(key=lambda m: m["key"])
    status, versions = registry.request("GET", "/subjects/%s-value/versions" % topic)
    assert versions == [1, 2]
    old, new = (decode(registry, m["value"], logical=True) for m in msgs)
    assert old["after"] == {"id": 1, "owner": "ann"}
    assert new["after"] == {"id": 2, "owner": "bob", "note": "hi"}
    _, v2 = writer_schema(registry, msgs[1]["value"])
    assert decode(registry, msgs[0]["value"], logical=True, reader=v2)["after"] == {"id": 1, "owner": "ann", "note": None}
    # A rename and a drop are compatible too: versions 3 and 4, each record by its own schema.
    db.execute("ALTER TABLE public.acct RENAME COLUMN note TO remark")
    db.execute("INSERT INTO public.acct VALUES (3, 'cy', 'r')")
    db.execute("ALTER TABLE public.acct DROP COLUMN owner")
    db.execute("INSERT INTO public.acct VALUES (4, 'd')")
    msgs = sorted(kafka.consume(topic, until=4, timeout=60), key=lambda m: m["key"])
    assert [decode(registry, m["value"])["after"] for m in msgs[2:]] == [
        {"id": 3, "owner": "cy", "remark": "r"}, {"id": 4, "remark": "d"}]
    status, versions = registry.request("GET", "/subjects/%s-value/versions" % topic)
    assert versions == [1, 2, 3, 4]
    assert outbox.relay.stop() == 0


def test_a_not_null_column_added_stops_the_relay_with_one_line_and_publishes_nothing_after(outbox, kafka, registry):
    """With REPLICA IDENTITY FULL every before and after carries every column, so a NOT NULL
    column is a required field: adding one is not BACKWARD compatible. The registry refuses
    version 2; the relay stops with one line naming the table, the subject and the registry's
    reason, and nothing of that change or after it is published."""
    db = outbox.db
    db.execute("CREATE TABLE public.strict (id int PRIMARY KEY, owner text NOT NULL)")
    db.execute("ALTER TABLE public.strict REPLICA IDENTITY FULL")
    start(outbox, registry, '{ tables = "public.strict"; snapshot = false; format = "avro"; }')
    topic = "%s.public.strict" % outbox.prefix
    db.execute("INSERT INTO public.strict VALUES (1, 'ann')")
    assert len(kafka.consume(topic, until=1, timeout=60)) == 1
    db.execute("ALTER TABLE public.strict ADD COLUMN level int NOT NULL DEFAULT 0")
    db.execute("INSERT INTO public.strict VALUES (2, 'bob', 5)")
    db.execute("INSERT INTO public.strict VALUES (3, 'cy', 6)")
    assert outbox.relay.wait_exit(60) == 1
    errors = [line for line in outbox.relay.log().splitlines() if " error " in line]
    assert len(errors) == 1, errors
    assert "public.strict" in errors[0] and topic + "-value" in errors[0] and "409" in errors[0], errors
    assert len(kafka.consume(topic, timeout=5)) == 1
    status, versions = registry.request("GET", "/subjects/%s-value/versions" % topic)
    assert versions == [1]


def test_a_registry_that_is_down_holds_the_changes_back_until_it_answers(outbox, kafka, registry):
    """The registry cannot be reached: the change is held back (not dead-lettered, the slot does
    not move); once the relay can reach it the change is published, once."""
    import socket
    db = outbox.db
    db.execute("CREATE TABLE public.held (id int PRIMARY KEY, v text)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = "http://127.0.0.1:%d/apis/ccompat/v7" % s.getsockname()[1]
    s.close()
    capture = '{ tables = "public.held"; snapshot = false; format = "avro"; }'
    outbox.reconfigure(capture=capture, extra_relay='topic_prefix = "%s";' % outbox.prefix,
                       extra_top='schema_registry = { url = "%s"; timeout_ms = 500; };' % dead)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    db.execute("INSERT INTO public.held VALUES (1, 'x')")
    outbox.relay.wait_log("holding back the row of public.held", timeout=60)
    topic = "%s.public.held" % outbox.prefix
    assert kafka.consume(topic, timeout=3) == []
    assert outbox.relay.stop() == 0
    start(outbox, registry, capture)
    assert len(kafka.consume(topic, until=1, timeout=60)) == 1
    msgs = kafka.consume(topic, timeout=10)  # to the end: once
    assert len(msgs) == 1
    assert decode(registry, msgs[0]["value"])["after"] == {"id": 1, "v": "x"}
    assert outbox.relay.stop() == 0


def test_a_change_read_after_its_column_was_dropped_is_published_not_lost(outbox, kafka, registry):
    """The relay is stopped while a row is written and its column then dropped: at the restart
    the catalog entry no longer has the column the change carries. The change goes out by a
    variant of the schema with that column as a nullable string (its text), a later change by
    the table's schema; nothing is dead-lettered."""
    db = outbox.db
    db.execute("CREATE TABLE public.late (id int PRIMARY KEY, keep text, gone numeric(6,2))")
    capture = '{ tables = "public.late"; snapshot = false; format = "avro"; }'
    start(outbox, registry, capture)
    topic = "%s.public.late" % outbox.prefix
    db.execute("INSERT INTO public.late VALUES (1, 'a', 1.50)")
    assert len(kafka.consume(topic, until=1, timeout=60)) == 1
    assert outbox.relay.stop() == 0
    db.execute("INSERT INTO public.late VALUES (2, 'b', 2.25)")
    db.execute("UPDATE public.late SET id = 5 WHERE id = 1")  # a key change: its update by the variant
    db.execute("ALTER TABLE public.late DROP COLUMN gone")
    db.execute("INSERT INTO public.late VALUES (3, 'c')")
    outbox.relay.start()
    outbox.relay.wait_streaming()
    msgs = kafka.consume(topic, until=6, timeout=60)  # + the key change's delete and tombstone
    for m in msgs:  # each record's schema_id header names the schema its own value was written by
        headers = dict(m["headers"] or [])
        if m["value"] is not None:
            assert int(headers["schema_id"]) == struct.unpack(">I", m["value"][1:5])[0]
    values = [decode(registry, m["value"]) for m in msgs if m["value"] is not None]
    by_op_id = {(v["op"], (v["after"] or v["before"])["id"]): v["after"] for v in values}
    assert by_op_id == {
        ("c", 1): {"id": 1, "keep": "a", "gone": b"\x00\x96"},  # numeric(6,2) 1.50: unscaled 150
        ("c", 2): {"id": 2, "keep": "b", "gone": "2.25"},        # the variant: the dropped column's text
        ("u", 5): {"id": 5, "keep": "a", "gone": "1.50"},        # the key change's update, by the variant
        ("d", 1): None,                                          # its delete of the old key
        ("c", 3): {"id": 3, "keep": "c"}}
    assert "dead-lettering" not in outbox.relay.log()
    assert outbox.relay.stop() == 0


def test_a_column_type_changed_under_a_running_relay_registers_a_new_version_with_exact_values(outbox, kafka, registry):
    """ALTER COLUMN TYPE real TO double precision while the relay runs: the change after it does
    not fit the catalog entry's types, so the entry is read again and the change goes out by a
    new version with a double, its value exact (not rounded through a float). A nested domain
    maps like its last base type (a bigint: a long)."""
    db = outbox.db
    db.execute("CREATE DOMAIN public.pos AS bigint CHECK (VALUE > 0)")
    db.execute("CREATE DOMAIN public.pos2 AS public.pos")
    db.execute("CREATE TABLE public.meas (id int PRIMARY KEY, v real, p public.pos2)")
    start(outbox, registry, '{ tables = "public.meas"; snapshot = false; format = "avro"; }')
    topic = "%s.public.meas" % outbox.prefix
    db.execute("INSERT INTO public.meas VALUES (1, 1.5, 9)")
    assert len(kafka.consume(topic, until=1, timeout=60)) == 1
    db.execute("ALTER TABLE public.meas ALTER COLUMN v TYPE double precision")
    db.execute("INSERT INTO public.meas VALUES (2, 0.1, 10)")
    msgs = sorted(kafka.consume(topic, until=2, timeout=60), key=lambda m: m["key"])
    assert len(msgs) == 2
    assert row_types(registry, msgs[0]["value"])["v"][1] == "float"
    assert row_types(registry, msgs[1]["value"])["v"][1] == "double"
    assert row_types(registry, msgs[1]["value"])["p"][1] == "long"
    assert decode(registry, msgs[1]["value"])["after"] == {"id": 2, "v": 0.1, "p": 10}
    status, versions = registry.request("GET", "/subjects/%s-value/versions" % topic)
    assert versions == [1, 2]
    assert "dead-lettering" not in outbox.relay.log()
    assert outbox.relay.stop() == 0


def test_dates_bytea_and_intervals_convert_whatever_styles_the_database_sets(outbox, kafka, registry):
    """The database sets DateStyle 'SQL, DMY', bytea_output 'escape' and IntervalStyle
    'iso_8601' for every session: the relay's own sessions use ISO, hex and postgres, so a
    snapshot row and a change both convert exactly."""
    db = outbox.db
    db.execute("CREATE TABLE public.styled (id int PRIMARY KEY, d date, ts timestamptz, b bytea, "
               "ba bytea[], iv interval)")
    db.execute("INSERT INTO public.styled VALUES (1, '2026-11-22', '2026-11-22 10:00:00+00', "
               "'\\x00ff', ARRAY['\\x0102'::bytea], '1 mon -2 days 03:00:00')")
    alter = "DO $$ BEGIN EXECUTE format('ALTER DATABASE %%I %s', current_database()); END $$"
    db.execute(alter % "SET DateStyle = ''SQL, DMY''")
    db.execute(alter % "SET bytea_output = ''escape''")
    db.execute(alter % "SET IntervalStyle = ''iso_8601''")
    try:
        start(outbox, registry, '{ tables = "public.styled"; format = "avro"; }')
        topic = "%s.public.styled" % outbox.prefix
        db.execute("INSERT INTO public.styled VALUES (2, '2026-11-23', '2026-11-23 10:00:00+00', "
                   "'\\x00fe', ARRAY['\\x0304'::bytea], '-00:00:01.5')")
        # Row 2 may come twice (its insert, and the snapshot chunk that saw it), and keys on
        # other partitions may come later: wait for both keys, the last record of each.
        msgs = kafka.consume(topic, until=lambda ms: len({m["key"] for m in ms}) == 2, timeout=60)
        last = {m["key"]: m for m in msgs}
        rows = [decode(registry, last[k]["value"], logical=True)["after"] for k in sorted(last)]
        utc = datetime.timezone.utc
        assert rows == [
            {"id": 1, "d": datetime.date(2026, 11, 22), "ts": datetime.datetime(2026, 11, 22, 10, tzinfo=utc),
             "b": b"\x00\xff", "ba": [b"\x01\x02"],
             "iv": {"months": 1, "days": -2, "microseconds": 3 * 3600 * 1000000}},
            {"id": 2, "d": datetime.date(2026, 11, 23), "ts": datetime.datetime(2026, 11, 23, 10, tzinfo=utc),
             "b": b"\x00\xfe", "ba": [b"\x03\x04"],
             "iv": {"months": 0, "days": 0, "microseconds": -1500000}}]
        assert "dead-lettering" not in outbox.relay.log()
        assert outbox.relay.stop() == 0
    finally:
        db.execute(alter % "RESET ALL")


def test_an_array_value_of_other_dimensions_than_its_column_declares_is_dead_lettered_not_flattened(outbox, kafka, registry):
    """int[][] declares two dimensions (attndims), which PostgreSQL does not enforce: a row with
    a one-dimensional value, or with lower bounds other than 1, is dead-lettered with the column
    and the reason; the rows around it are published with their nested arrays."""
    db = outbox.db
    db.execute("CREATE TABLE public.grid (id int PRIMARY KEY, g int[][])")
    dlq = start_dead_lettering(outbox, registry, '{ tables = "public.grid"; snapshot = false; format = "avro"; }')
    topic = "%s.public.grid" % outbox.prefix
    db.execute("INSERT INTO public.grid VALUES (1, '{{1,2},{3,NULL}}')")
    db.execute("INSERT INTO public.grid VALUES (2, '{1,2}')")
    db.execute("INSERT INTO public.grid VALUES (3, '[0:1][1:1]={{5},{6}}')")
    db.execute("INSERT INTO public.grid VALUES (4, '{}')")
    msgs = sorted(kafka.consume(topic, until=2, timeout=60), key=lambda m: m["key"])
    assert [decode(registry, m["value"])["after"] for m in msgs] == [
        {"id": 1, "g": [[1, 2], [3, None]]}, {"id": 4, "g": []}]
    dead = kafka.consume(dlq, until=2, timeout=60)
    reasons = sorted(dict(d["headers"])["dlq_reason"].decode() for d in dead)
    assert len(reasons) == 2, reasons
    assert "fewer dimensions than the column's 2 (attndims)" in reasons[0] and '"g"' in reasons[0], reasons
    assert "bounds other than 1" in reasons[1] and '"g"' in reasons[1], reasons
    assert outbox.relay.stop() == 0


def test_a_partition_and_a_domain_column_have_the_array_dimensions_their_parent_and_domain_declare(outbox, kafka, registry):
    """A partition cannot declare its columns' dimensions (its attndims are 0), nor can a
    column of a domain over text[][]: the dimensions are the partitioned table's and the
    domain's, so two-dimensional values go out as nested arrays, nothing dead-lettered. An
    interval with fields (day to second) is an Interval record like any interval."""
    db = outbox.db
    db.execute("CREATE DOMAIN public.matrix AS text[][]")
    db.execute("CREATE TABLE public.grids (id int PRIMARY KEY, g int[][], m public.matrix, "
               "iv interval day to second(3)) PARTITION BY RANGE (id)")
    db.execute("CREATE TABLE public.grids_low PARTITION OF public.grids FOR VALUES FROM (0) TO (100)")
    start_dead_lettering(outbox, registry, '{ tables = "public.grids_low"; snapshot = false; format = "avro"; }')
    topic = "%s.public.grids_low" % outbox.prefix
    db.execute("INSERT INTO public.grids VALUES (1, '{{1,2},{3,NULL}}', '{{a,\"b c\"}}', "
               "'1 day 00:00:01.5')")
    msgs = kafka.consume(topic, until=1, timeout=60)
    assert [decode(registry, m["value"])["after"] for m in msgs] == [
        {"id": 1, "g": [[1, 2], [3, None]], "m": [["a", "b c"]],
         "iv": {"months": 0, "days": 1, "microseconds": 1500000}}]
    assert "dead-lettering" not in outbox.relay.log()
    assert outbox.relay.stop() == 0


# ---- keys in Avro (key_format = "avro") ----

def deserializer(registry, field):
    """confluent-kafka's AvroDeserializer for a record's "key" or "value": it fetches the writer
    schema by the wire id."""
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext
    deser = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    which = MessageField.KEY if field == "key" else MessageField.VALUE
    return lambda m: deser(m[field], SerializationContext(m["topic"], which))


def key_deserializer(registry):
    return deserializer(registry, "key")


def key_of(row):
    """A row's key columns as the key record decodes them (uuid: its text)."""
    return {"tenant": row["tenant"], "code": row["code"], "id": str(row["id"])}


def decoded_key(deser, m):
    k = deser(m)
    return dict(k, id=str(k["id"])) if k else k


def test_avro_keys_of_a_composite_key_decode_with_confluents_deserializer_to_the_rows_key_columns(outbox, kafka, registry):
    """key_format = "avro" on a table whose primary key is int + text + uuid: every record's key
    (snapshot row, insert, update, the key change's delete and update, a delete, their
    tombstones) is a Key record in the wire format, registered under <topic>-key, that
    confluent-kafka's AvroDeserializer decodes to the key columns of the row the value holds
    (the old row's for a delete); a key column retyped registers the key subject's version 2."""
    db = outbox.db
    db.execute("CREATE TABLE public.ck (tenant int, code text, id uuid, v text, "
               "PRIMARY KEY (tenant, code, id))")
    u1, u2 = "00000000-0000-0000-0000-0000000000a1", "ffffffff-0000-4000-8000-0000000000b2"
    db.execute("INSERT INTO public.ck VALUES (-1, 'snap', %s, 'old')", (u1,))
    start(outbox, registry, '{ tables = "public.ck"; format = "avro"; key_format = "avro"; }')
    topic = "%s.public.ck" % outbox.prefix
    assert len(kafka.consume(topic, until=1, timeout=90)) == 1  # the snapshot row
    db.execute("INSERT INTO public.ck VALUES (7, 'k\u00e9y \"q\"', %s, 'a'), (2147483647, '', %s, 'b')",
               (u1, u2))
    db.execute("UPDATE public.ck SET v = 'a2' WHERE tenant = 7")
    db.execute("UPDATE public.ck SET code = 'moved' WHERE tenant = 7")  # a key change
    db.execute("DELETE FROM public.ck WHERE tenant = 2147483647")
    # r, 2 c, u, key change (d, tombstone, u), d, tombstone
    msgs = sorted(kafka.consume(topic, until=9, timeout=90), key=lambda m: (m["partition"], m["offset"]))
    assert len(msgs) == 9
    deser = key_deserializer(registry)
    subject = topic + "-key"
    status, latest = registry.request("GET", "/subjects/%s/versions/latest" % subject)
    assert status == 200 and latest["version"] == 1, latest
    assert json.loads(latest["schema"]) == {
        "type": "record", "name": "Key", "namespace": "%s.public.ck" % outbox.prefix,
        "fields": [{"name": "tenant", "type": "int"}, {"name": "code", "type": "string"},
                   {"name": "id", "type": {"type": "string", "logicalType": "uuid"}}]}
    seen = []
    for i, m in enumerate(msgs):
        assert m["key"][0] == 0 and struct.unpack(">I", m["key"][1:5])[0] == latest["id"]
        if m["value"] is None:  # a tombstone: right after its delete, with the same key bytes
            prev = msgs[i - 1]
            assert prev["partition"] == m["partition"] and prev["key"] == m["key"]
            assert decode(registry, prev["value"])["op"] == "d"
            seen.append(("tombstone", decoded_key(deser, m)))
            continue
        v = decode(registry, m["value"])
        row = v["after"] if v["op"] != "d" else v["before"]
        assert decoded_key(deser, m) == key_of(row), (v, m["key"])
        assert set(dict(m["headers"] or [])) >= {"schema_id", "schema_subject"}
        assert dict(m["headers"])["schema_subject"] == (topic + "-value").encode()  # the value's
        seen.append((v["op"], decoded_key(deser, m)))
    k7 = {"tenant": 7, "code": "k\u00e9y \"q\"", "id": u1}
    kmax = {"tenant": 2147483647, "code": "", "id": u2}
    moved = dict(k7, code="moved")
    order = lambda pairs: sorted(pairs, key=lambda p: json.dumps(p, sort_keys=True))
    assert order(seen) == order([
        ("r", {"tenant": -1, "code": "snap", "id": u1}), ("c", k7), ("c", kmax), ("u", k7),
        ("d", k7), ("tombstone", k7), ("u", moved), ("d", kmax), ("tombstone", kmax)])
    # Within a key's partition, its records in the order of the changes.
    per_key = {}
    for op, k in seen:
        per_key.setdefault(json.dumps(k, sort_keys=True), []).append(op)
    assert per_key[json.dumps(k7, sort_keys=True)] == ["c", "u", "d", "tombstone"]
    # A key column retyped (int to bigint, BACKWARD compatible): the key schema is derived again.
    db.execute("ALTER TABLE public.ck ALTER COLUMN tenant TYPE bigint")
    db.execute("INSERT INTO public.ck VALUES (9223372036854775807, 'big', %s, 'c')", (u2,))
    last = kafka.consume(topic, until=10, timeout=90)
    assert len(last) == 10
    newest = [m for m in last if m["value"] is not None and decode(registry, m["value"])["after"]
              and decode(registry, m["value"])["after"]["code"] == "big"][0]
    assert decoded_key(deser, newest) == {"tenant": 9223372036854775807, "code": "big", "id": u2}
    status, versions = registry.request("GET", "/subjects/%s/versions" % subject)
    assert versions == [1, 2]
    _, schema = writer_schema(registry, newest["key"])
    assert schema["fields"][0] == {"name": "tenant", "type": "long"}
    assert "dead-lettering" not in outbox.relay.log()
    assert outbox.relay.stop() == 0


def test_a_table_without_a_key_has_null_keys_and_no_key_subject_with_avro_keys(outbox, kafka, registry):
    """unkeyed = true on a table with REPLICA IDENTITY FULL and no key: with key_format = "avro"
    its records keep a null key (as with string keys; no tombstones, nothing to compact), and no
    key schema is registered; the values are Avro as usual."""
    db = outbox.db
    db.execute("CREATE TABLE public.nokey (a int, b text)")
    db.execute("ALTER TABLE public.nokey REPLICA IDENTITY FULL")
    start(outbox, registry, '{ tables = "public.nokey"; snapshot = false; unkeyed = true; '
                            'format = "avro"; key_format = "avro"; }')
    topic = "%s.public.nokey" % outbox.prefix
    db.execute("INSERT INTO public.nokey VALUES (1, 'x')")
    db.execute("UPDATE public.nokey SET b = 'y'")
    db.execute("DELETE FROM public.nokey")
    msgs = kafka.consume(topic, until=3, timeout=90)
    assert len(msgs) == 3
    assert [m["key"] for m in msgs] == [None, None, None]
    # Null keys spread over partitions, and timestamps can tie: ordered by the change's lsn.
    lsn = lambda v: [int(part, 16) for part in v["source"]["lsn"].split("/")]
    values = sorted((decode(registry, m["value"]) for m in msgs), key=lsn)
    assert [(v["op"], v["before"], v["after"]) for v in values] == [
        ("c", None, {"a": 1, "b": "x"}), ("u", {"a": 1, "b": "x"}, {"a": 1, "b": "y"}),
        ("d", {"a": 1, "b": "y"}, None)]
    assert len(kafka.consume(topic, timeout=5)) == 3  # no tombstone came after
    status, _ = registry.request("GET", "/subjects/%s-key/versions" % topic)
    assert status == 404
    assert outbox.relay.stop() == 0


def test_check_config_refuses_avro_keys_of_a_capture_entry_without_avro_values(tmp_path):
    import relayctl
    code, out = relayctl.check_config_text(tmp_path, 'capture = ( { tables = "public.t"; key_format = "avro"; } );\n')
    assert code == 2 and 'relay.conf:3: capture[0]: key_format = "avro" needs format = "avro"' in out, out


def test_avro_keys_are_held_back_while_the_registry_is_down_and_published_once_after(outbox, kafka, registry):
    """The registry stops answering (paused) before the first record of a table with Avro keys:
    the change is held back (not dead-lettered, the slot does not move); once it answers again
    the record goes out once, its key a Key record the deserializer reads."""
    db = outbox.db
    db.execute("CREATE TABLE public.kheld (id int PRIMARY KEY, v text)")
    start(outbox, registry, '{ tables = "public.kheld"; snapshot = false; format = "avro"; '
                            'key_format = "avro"; }', extra_registry="timeout_ms = 500;")
    topic = "%s.public.kheld" % outbox.prefix
    registry.pause()
    try:
        db.execute("INSERT INTO public.kheld VALUES (1, 'x')")
        outbox.relay.wait_log("holding back the row of public.kheld", timeout=60)
        assert kafka.consume(topic, timeout=3) == []
    finally:
        registry.resume()
    assert len(kafka.consume(topic, until=1, timeout=90)) == 1
    msgs = kafka.consume(topic, timeout=10)  # to the end: once
    assert len(msgs) == 1
    assert key_deserializer(registry)(msgs[0]) == {"id": 1}
    assert decode(registry, msgs[0]["value"])["after"] == {"id": 1, "v": "x"}
    assert "dead-lettering" not in outbox.relay.log()
    assert outbox.relay.stop() == 0


def test_a_key_schema_the_registry_refuses_stops_the_relay_with_one_line_naming_the_key_subject(outbox, kafka, registry):
    """The key subject already holds a string schema (BACKWARD): the derived Key record is not
    compatible, so the registry refuses it. The relay stops with one line naming the table and
    the key subject; nothing of the change is published (its value's subject was fine)."""
    db = outbox.db
    db.execute("CREATE TABLE public.kref (id int PRIMARY KEY)")
    topic = "%s.public.kref" % outbox.prefix
    status, body = registry.request("POST", "/subjects/%s-key/versions" % topic,
                                    {"schema": json.dumps({"type": "string"})})
    assert status == 200, body
    start(outbox, registry, '{ tables = "public.kref"; snapshot = false; format = "avro"; '
                            'key_format = "avro"; }')
    db.execute("INSERT INTO public.kref VALUES (1)")
    assert outbox.relay.wait_exit(60) == 1
    errors = [line for line in outbox.relay.log().splitlines() if " error " in line]
    assert len(errors) == 1, errors
    assert "public.kref" in errors[0] and "key schema" in errors[0] and topic + "-key" in errors[0], errors
    assert kafka.consume(topic, timeout=5) == []


def test_avro_key_fields_are_named_as_the_rows_and_the_key_subject_is_the_topics_whatever_the_strategy(outbox, kafka, registry):
    """Columns "a b" and a_b (the key) both sanitize to a_b: the row names a_b "a_b_2", and the
    key record names it the same, so key and row fields match. With subject_strategy =
    RecordNameStrategy (for outbox sources), the key goes under <topic>-key like the value
    under <topic>-value: no subject named after the Key record."""
    db = outbox.db
    db.execute('CREATE TABLE public.kname ("a b" int, a_b int PRIMARY KEY, v text)')
    start(outbox, registry, '{ tables = "public.kname"; snapshot = false; format = "avro"; '
                            'key_format = "avro"; }',
          extra_registry='subject_strategy = "RecordNameStrategy";')
    topic = "%s.public.kname" % outbox.prefix
    db.execute("INSERT INTO public.kname VALUES (1, 5, 'x')")
    msgs = kafka.consume(topic, until=1, timeout=90)
    assert len(msgs) == 1
    row = decode(registry, msgs[0]["value"])["after"]
    assert row == {"a_b": 1, "a_b_2": 5, "v": "x"}
    assert key_deserializer(registry)(msgs[0]) == {"a_b_2": 5}
    assert dict(msgs[0]["headers"])["schema_subject"] == (topic + "-value").encode()
    status, latest = registry.request("GET", "/subjects/%s-key/versions/latest" % topic)
    assert status == 200 and struct.unpack(">I", msgs[0]["key"][1:5])[0] == latest["id"], latest
    status, _ = registry.request("GET", "/subjects/%s.public.kname.Key/versions" % outbox.prefix)
    assert status == 404
    assert outbox.relay.stop() == 0


def test_a_key_change_whose_new_key_the_key_record_cannot_hold_is_dead_lettered_whole(outbox, kafka, registry):
    """The key column n (numeric, left out of the row) is set to NaN, which wal2json prints as
    null: the update's key cannot be the Key record (n is required), though its value converts.
    The key change is dead-lettered whole with a reason naming the record key: no delete of the
    old key, no update with another key; the next change goes out."""
    db = outbox.db
    db.execute("CREATE TABLE public.kbad (n numeric(6,2) PRIMARY KEY, v text)")
    db.execute("INSERT INTO public.kbad VALUES (1, 'x')")
    dlq = start_dead_lettering(outbox, registry, '{ tables = "public.kbad"; snapshot = false; format = "avro"; '
                                                 'key_format = "avro"; exclude_columns = ["n"]; }')
    topic = "%s.public.kbad" % outbox.prefix
    db.execute("UPDATE public.kbad SET n = 'NaN' WHERE n = 1")
    db.execute("INSERT INTO public.kbad VALUES (2, 'y')")
    msgs = kafka.consume(topic, until=1, timeout=90)
    assert len(msgs) == 1
    assert key_deserializer(registry)(msgs[0]) == {"n": decimal.Decimal("2.00")}
    assert decode(registry, msgs[0]["value"])["op"] == "c"
    assert len(kafka.consume(topic, timeout=10)) == 1  # to the end: nothing of the key change
    dead = kafka.consume(dlq, until=1, timeout=60)
    assert len(dead) == 1
    h = dict(dead[0]["headers"])
    assert h["dlq_reason"].startswith(b"the record key (key_format = \"avro\"): column \"n\""), h
    assert json.loads(dead[0]["key"]) == {"n": None}  # the key as JSON text
    assert outbox.relay.proc.poll() is None


# ---- protected columns (docs/privacy.md) ----

IDV = (1, "1984-02-29", 4400123456789, "0.98731", 41, "Ana")
IDV_NEW = (2, "1990-07-01", 5500987654321, "0.50012", 33, "Bo")
IDV_DOC, IDV_SCORE = 5500111122223, "0.61234"  # row 2 updated
PASSPORTS = (770011223344, 880011223344)
PROTECT = """protect = (
  { columns = ["date_of_birth"]; action = "hash"; },
  { columns = ["document_number"]; tables = ["public.idv"]; action = "mask"; keep_last = 2; },
  { columns = ["face_match_score", "passport_no"]; action = "encrypt"; },
  { columns = ["age"]; action = "drop"; }
);
protection = { key_id = "test-1"; };
"""


def value_fields(registry, subject):
    """{field name: its Avro type} of the row record of the latest value schema of subject."""
    status, latest = registry.request("GET", "/subjects/%s/versions/latest" % subject)
    assert status == 200, latest
    schema = json.loads(latest["schema"])
    row = [f for f in schema["fields"] if f["name"] == "before"][0]["type"][1]  # defined there
    return {f["name"]: f["type"] for f in row["fields"]}


def test_protected_columns_of_any_type_are_strings_or_left_out_and_nothing_is_dead_lettered(outbox, kafka, registry, tmp_path):
    """Identity tables in Avro under protect rules: date_of_birth (date) hashed, document_number
    (bigint) masked, face_match_score (numeric) encrypted, age (int NOT NULL) dropped, and a key
    column passport_no (bigint) encrypted with key_format = "avro". Their fields are strings
    (nullable as the column: date_of_birth stays required) and age has none; snapshot rows,
    inserts, updates (before too) and deletes decode with confluent-kafka's AvroDeserializer to
    the protected texts (the encrypted ones decrypt to the clear text); the key record holds the
    keyed hash of passport_no, one per row. Nothing is dead-lettered, and no clear value is in
    any record, the checkpoint topic or the log."""
    import relayctl
    from test_privacy import credentials, decrypt, hashed
    db = outbox.db
    db.execute("CREATE TABLE public.idv (id bigint PRIMARY KEY, date_of_birth date NOT NULL, "
               "document_number bigint, face_match_score numeric, age int NOT NULL, name text)")
    db.execute("ALTER TABLE public.idv REPLICA IDENTITY FULL")
    db.execute("CREATE TABLE public.idk (passport_no bigint PRIMARY KEY, date_of_birth date, v text)")
    db.execute("INSERT INTO public.idv VALUES (%s, %s, %s, %s, %s, %s)", IDV)
    db.execute("INSERT INTO public.idk VALUES (%s, '2001-01-01', 'snap')", (PASSPORTS[0],))
    outbox.relay.env = credentials(tmp_path)
    dlq = start_dead_lettering(outbox, registry, '{ tables = "public.idv"; format = "avro"; }, '
                               '{ tables = "public.idk"; format = "avro"; key_format = "avro"; }',
                               extra_top=PROTECT)
    outbox.relay.wait_log("snapshot: all done", timeout=90)  # the snapshot rows are the first rows
    db.execute("INSERT INTO public.idv VALUES (%s, %s, %s, %s, %s, %s)", IDV_NEW)
    db.execute("UPDATE public.idv SET document_number = %s, face_match_score = %s WHERE id = 2",
               (IDV_DOC, IDV_SCORE))
    db.execute("DELETE FROM public.idv WHERE id = 1")
    db.execute("INSERT INTO public.idk VALUES (%s, NULL, 'new')", (PASSPORTS[1],))
    db.execute("UPDATE public.idk SET v = 'snap2' WHERE passport_no = %s", (PASSPORTS[0],))
    db.execute("DELETE FROM public.idk WHERE passport_no = %s", (PASSPORTS[0],))
    tv, tk = "%s.public.idv" % outbox.prefix, "%s.public.idk" % outbox.prefix
    # r, c, u, d and its tombstone on each
    idv = kafka.consume(tv, until=5, timeout=90)
    idk = kafka.consume(tk, until=5, timeout=90)
    assert len(idv) == 5 and len(idk) == 5, (len(idv), len(idk))

    assert value_fields(registry, tv + "-value") == {
        "id": "long", "date_of_birth": "string", "document_number": ["null", "string"],
        "face_match_score": ["null", "string"], "name": ["null", "string"]}
    assert value_fields(registry, tk + "-value") == {
        "passport_no": "string", "date_of_birth": ["null", "string"], "v": ["null", "string"]}
    status, key_schema = registry.request("GET", "/subjects/%s-key/versions/latest" % tk)
    assert status == 200 and json.loads(key_schema["schema"])["fields"] == [
        {"name": "passport_no", "type": "string"}], key_schema

    values = deserializer(registry, "value")
    rows = {}
    for m in idv:
        if m["value"] is not None:
            v = values(m)
            rows[v["op"]] = v
    assert sorted(rows) == ["c", "d", "r", "u"]

    def protected(row, src, doc=None, score=None):
        assert set(row) == {"id", "date_of_birth", "document_number", "face_match_score", "name"}, row
        assert row["id"] == src[0] and row["name"] == src[5]
        assert row["date_of_birth"] == hashed(src[1])
        assert row["document_number"] == "****"  # a number is masked whole
        assert decrypt(row["face_match_score"]) == (score or src[3])

    protected(rows["r"]["after"], IDV)
    protected(rows["c"]["after"], IDV_NEW)
    protected(rows["u"]["before"], IDV_NEW)
    protected(rows["u"]["after"], IDV_NEW, score=IDV_SCORE)
    protected(rows["d"]["before"], IDV)

    keys = key_deserializer(registry)
    by_op = {}
    for m in idk:
        k = keys(m)
        if m["value"] is None:
            by_op["tombstone"] = k
            continue
        v = values(m)
        by_op[v["op"]] = k
        row = v["after"] if v["op"] != "d" else v["before"]
        assert k == {"passport_no": hashed(decrypt(row["passport_no"]))}, (v, k)
        if v["op"] == "c":
            assert row["date_of_birth"] is None and row["v"] == "new"  # a null stays null
        elif v["op"] in ("r", "u"):
            assert row["date_of_birth"] == hashed("2001-01-01")
    snap_key = {"passport_no": hashed(str(PASSPORTS[0]))}
    assert by_op == {"r": snap_key, "c": {"passport_no": hashed(str(PASSPORTS[1]))}, "u": snap_key,
                     "d": snap_key, "tombstone": snap_key}

    assert "dead-lettering" not in outbox.relay.log()
    assert kafka.consume(dlq, timeout=5) == []
    written = []
    for m in kafka.consume([tv, tk, relayctl.checkpoint_topic(outbox.slot)], timeout=30):
        written += [m["key"] or b"", m["value"] or b""] + [v or b"" for _, v in m["headers"] or []]
    written = b"\n".join(written + [outbox.relay.log().encode()])
    clear = [IDV[1], IDV_NEW[1], "2001-01-01", IDV[3], IDV_NEW[3], IDV_SCORE] + \
        [str(n) for n in (IDV[2], IDV_NEW[2], IDV_DOC) + PASSPORTS]
    leaked = [c for c in clear if c.encode() in written]
    assert not leaked, leaked
    assert outbox.relay.stop() == 0
