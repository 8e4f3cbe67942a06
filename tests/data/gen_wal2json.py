# gen_wal2json.py: writes real wal2json 2.5 format-version 2 records into tests/data/wal2json/.
"""Generate the wal2json sample records the C unit tests decode.

Run from anywhere with the system Python (it needs psycopg2 and tests/harness.py):

    /usr/bin/python3 tests/data/gen_wal2json.py

It starts a throwaway PostgreSQL 15 (tests/harness.py), creates a wal2json slot,
runs a fixed script of statements (all record kinds B C I U D M T, a table with
many column types, an outbox table shaped like sql/outbox.sql) and writes:

  records.jsonl  one wal2json record per line, exactly as the plugin printed it
                 (also the seed corpus of the decoder fuzzers)
  records.meta   per line of records.jsonl: "LSN XID" as pg_logical_slot_get_changes
                 reported them next to the record (an independent source of truth)

xids, LSNs and timestamps change from run to run; every value the statements write
is fixed, so the tests can compare column values byte for byte.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests"))
import harness  # noqa: E402

OUT_DIR = os.path.join(HERE, "wal2json")
SLOT = "gen"

# Text with a double quote, a backslash, a newline, a tab, an emoji (outside the BMP) and non-ASCII.
TRICKY_TEXT = 'say "hi" \\ back\\slash\nnew line\ttab \U0001F600 caf\u00e9 \u65e5\u672c \u00ff'

TYPES_TABLE = """
CREATE TABLE public.types (
    id      bigint PRIMARY KEY,
    big     bigint,
    num     numeric,
    nan     numeric,
    inf     float8,
    ninf    float8,
    f4      real,
    txt     text,
    vc      varchar(40),
    by      bytea,
    jb      jsonb,
    js      json,
    ints    int[],
    texts   text[],
    ts      timestamptz,
    flag    bool,
    u       uuid,
    nothing text
)
"""

# A table whose identity is the whole old row.
FULL_TABLE = """
CREATE TABLE public.full_ident (id int PRIMARY KEY, note text);
ALTER TABLE public.full_ident REPLICA IDENTITY FULL
"""

TYPES_ROW = """
INSERT INTO public.types VALUES (
    1, 9007199254740993, 12345678901234567890.123, 'NaN', 'Infinity', '-Infinity', 1.5,
    %(txt)s, 'plain ascii',
    '\\x00010200ff00'::bytea,
    %(jb)s::jsonb, %(js)s::json,
    ARRAY[1, NULL, 3], ARRAY['a"b', 'c\\d', NULL],
    '2024-02-29 12:34:56.789+00', true, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', NULL)
"""

JB = '{"q": "x\\"y", "bs": "a\\\\b", "big": 9007199254740993, "num": 12345678901234567890.123, "u": "\u00e9\U0001F600"}'
JS = '{ "kept" : "as typed",  "n": 1.0e2 }'

OUTBOX_PUBLISH = """
SELECT outbox.publish(%s, %s, %s, %s::jsonb, %s::jsonb)
"""

# (aggregate_type, aggregate_id, event_type, payload, headers)
OUTBOX_EVENTS = [
    ("order", "order-42", "OrderPlaced",
     '{"id": 9007199254740993, "total": 12345678901234567890.123, "note": "say \\"hi\\" \\\\ '
     'caf\u00e9 \U0001F600", "lines": [1, 2.50, -0.5e-10], "gift": false, "memo": null}',
     '{"trace-id": "abc\\"def", "retries": 3, "sampled": true, "none": null, '
     '"obj": {"a": [1, 2]}, "uni": "\u00e9\U0001F600"}'),
    ("customer", "c\u00e9-7", "CustomerRenamed", '{"name": "Zo\u00eb"}', None),
    ("order", "order-43", "OrderShipped", '[]', '{}'),
]


def sql_script(db):
    """Run the statements whose changes the slot records, in a fixed order."""
    conn = db.connect(autocommit=True)
    cur = conn.cursor()
    # 1. a multi-column insert with every type
    cur.execute(TYPES_ROW, {"txt": TRICKY_TEXT, "jb": JB, "js": JS})
    # 2. a row of NULLs
    cur.execute("INSERT INTO public.types (id) VALUES (2)")
    # 3. one transaction: update (key unchanged), update (key changed), delete
    conn.autocommit = False
    cur.execute("UPDATE public.types SET txt = 'updated', big = -9007199254740993 WHERE id = 1")
    cur.execute("UPDATE public.types SET id = 3 WHERE id = 2")
    cur.execute("DELETE FROM public.types WHERE id = 3")
    conn.commit()
    conn.autocommit = True
    # 4. replica identity full: the old row comes as identity
    cur.execute("INSERT INTO public.full_ident VALUES (1, 'before')")
    cur.execute("UPDATE public.full_ident SET note = 'after' WHERE id = 1")
    cur.execute("DELETE FROM public.full_ident WHERE id = 1")
    # 5. messages: transactional (inside B/C) and not (alone)
    cur.execute("SELECT pg_logical_emit_message(true, 'p', 'c')")
    cur.execute("SELECT pg_logical_emit_message(false, 'p', 'c')")
    cur.execute("SELECT pg_logical_emit_message(false, 'pre\"fix', 'con\\tent \u00e9')")
    # 6. outbox events, two in one transaction with a transactional message between them
    conn.autocommit = False
    cur.execute(OUTBOX_PUBLISH, OUTBOX_EVENTS[0])
    cur.execute("SELECT pg_logical_emit_message(true, 'outbox', 'marker')")
    cur.execute(OUTBOX_PUBLISH, OUTBOX_EVENTS[1])
    conn.commit()
    conn.autocommit = True
    cur.execute(OUTBOX_PUBLISH, OUTBOX_EVENTS[2])
    # 7. truncate of two tables at once
    cur.execute("TRUNCATE public.types, public.full_ident")
    conn.close()


def outbox_sql():
    """sql/outbox.sql without its psql meta-commands."""
    with open(os.path.join(REPO, "sql", "outbox.sql")) as f:
        return "".join(line for line in f if not line.startswith("\\"))


def generate(pg):
    """Create a database and slot, run the script, return [(lsn, xid, data)]."""
    db = pg.create_database("gen_wal2json")
    try:
        db.execute(outbox_sql())
        db.execute(TYPES_TABLE)
        db.execute(FULL_TABLE)
        db.query("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (SLOT,))
        sql_script(db)
        rows = db.query(
            "SELECT lsn::text, xid::text, data FROM pg_logical_slot_get_changes(%s, NULL, NULL, "
            "'format-version', '2', 'include-transaction', '1', 'include-xids', '1', "
            "'include-timestamp', '1', 'include-lsn', '1')", (SLOT,))
    finally:
        pg.drop_database(db.name)
    return rows


def main():
    pg = harness.Postgres()
    try:
        pg.start()
        rows = generate(pg)
    finally:
        pg.cleanup()
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, "records.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for _, _, data in rows:
            json.loads(data)  # each line must be one JSON value
            assert "\n" not in data
            f.write(data + "\n")
    with open(os.path.join(OUT_DIR, "records.meta"), "w", newline="\n") as f:
        for lsn, xid, _ in rows:
            f.write("%s %s\n" % (lsn, xid))
    print("wrote %d records to %s" % (len(rows), OUT_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
