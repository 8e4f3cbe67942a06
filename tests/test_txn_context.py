# test_txn_context.py: each record's PostgreSQL transaction context (headers) and the transaction topic.
import json
import signal

import pytest

import relayctl

from harness import wait_for

CONTEXT = ("pg_xid", "pg_commit_lsn", "pg_txn_index")


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def context(m):
    """The record's (xid, commit lsn, index) from its headers, or None when it has none."""
    h = dict(m["headers"])
    if not any(name in h for name in CONTEXT):
        return None
    return int(h["pg_xid"]), h["pg_commit_lsn"].decode(), int(h["pg_txn_index"])


def by_transaction(msgs):
    """Records grouped by commit lsn: {lsn: [(xid, index, record)...]} in consumption order."""
    out = {}
    for m in msgs:
        xid, lsn, index = context(m)
        out.setdefault(lsn, []).append((xid, index, m))
    return out


def start(outbox, capture=None, extra_relay=""):
    outbox.reconfigure(capture=capture, extra_relay='topic_prefix = "%s"; transaction_headers = true; %s'
                       % (outbox.prefix, extra_relay))
    outbox.relay.start()
    outbox.relay.wait_streaming()


def write_in_one_transaction(db, statements):
    """Runs statements in one transaction; returns its txid_current()."""
    conn = db.connect(autocommit=False)
    try:
        cur = conn.cursor()
        cur.execute("SELECT txid_current()")
        xid = cur.fetchone()[0]
        for s in statements:
            cur.execute(s)
        conn.commit()
        return xid
    finally:
        conn.close()


def publish(aggregate_type, key, n):
    return "SELECT outbox.publish('%s', '%s', 'Changed', '{\"n\": %d}')" % (aggregate_type, key, n)


def test_every_record_of_a_transaction_carries_its_xid_commit_lsn_and_index_across_topics(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, status text)")
    db.execute("INSERT INTO public.accounts VALUES (1, 'read by the snapshot')")
    start(outbox, capture='{ tables = "public.accounts"; }')
    cdc = outbox.prefix + ".public.accounts"
    snap = kafka.consume([cdc], until=1, timeout=60)
    assert len(snap) == 1 and json.loads(snap[0]["value"])["op"] == "r"
    assert context(snap[0]) is None, "a snapshot row is no transaction's change"
    first = write_in_one_transaction(db, [
        publish("user", "u1", 1),
        "INSERT INTO public.accounts VALUES (2, 'new')",
        publish("order", "o1", 2),
        "UPDATE public.accounts SET status = 'screened' WHERE id = 2",
        "DELETE FROM public.accounts WHERE id = 1",  # a delete and its tombstone: two records
        publish("user", "u1", 3),
    ])
    second = write_in_one_transaction(db, [publish("order", "o2", 4), "INSERT INTO public.accounts VALUES (3, 'x')"])
    after = lsn_int(db.query("SELECT pg_current_wal_lsn()::text")[0][0])
    topics = [outbox.topic("user"), outbox.topic("order"), cdc]
    msgs = kafka.consume(topics, until=1 + 7 + 2, timeout=90)
    txns = by_transaction([m for m in msgs if context(m)])
    assert len(txns) == 2, txns.keys()
    (lsn1, one), (lsn2, two) = sorted(txns.items(), key=lambda kv: lsn_int(kv[0]))
    assert lsn_int(lsn1) < lsn_int(lsn2) <= after
    assert {x for x, _, _ in one} == {first} and {x for x, _, _ in two} == {second}
    assert sorted(i for _, i, _ in one) == list(range(7))  # 3 events, 4 change records
    assert sorted(i for _, i, _ in two) == list(range(2))
    # In each partition of each topic, the indexes of one transaction rise in commit order.
    for p in {(m["topic"], m["partition"]) for _, _, m in one}:
        got = [i for _, i, m in one if (m["topic"], m["partition"]) == p]
        assert got == sorted(got), p
    # The outbox rows, in the order the transaction wrote them, across two topics.
    events = sorted((i, json.loads(m["value"])["n"]) for _, i, m in one if m["topic"] != cdc)
    assert [n for _, n in events] == [1, 2, 3]


def transaction_records(kafka, topic, n, timeout=90):
    msgs = kafka.consume([topic], until=n, timeout=timeout)
    assert len(msgs) >= n, "got %d of %d transaction records" % (len(msgs), n)
    return [(m["key"].decode(), json.loads(m["value"])) for m in msgs]


def test_the_transaction_topic_has_a_begin_and_an_end_with_the_count_per_topic(outbox, kafka):
    db = outbox.db
    db.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, status text)")
    db.execute("CREATE TABLE public.ignored (id int PRIMARY KEY)")
    txtopic = outbox.prefix + ".transactions"
    start(outbox, capture='{ tables = "public.accounts"; snapshot = false; }',
          extra_relay='transaction_topic = "%s";' % txtopic)
    cdc = outbox.prefix + ".public.accounts"
    first = write_in_one_transaction(db, [publish("user", "u1", 1), publish("user", "u2", 2),
                                          "INSERT INTO public.accounts VALUES (1, 'a')", publish("order", "o", 3)])
    db.execute("INSERT INTO public.ignored VALUES (1)")  # publishes nothing: no BEGIN, no END
    second = write_in_one_transaction(db, ["UPDATE public.accounts SET status = 'b' WHERE id = 1"])
    got = transaction_records(kafka, txtopic, 4)
    assert len(kafka.consume([txtopic], timeout=5)) == 4
    # Keyed by transaction: one transaction's records share a partition, in order.
    by_key = {}
    for key, v in got:
        by_key.setdefault(key, []).append(v)
    assert sorted(v[0]["xid"] for v in by_key.values()) == [first, second]
    assert all([v["status"] for v in vs] == ["BEGIN", "END"] for vs in by_key.values())
    published = by_transaction(kafka.consume([outbox.topic("user"), outbox.topic("order"), cdc], until=5, timeout=60))
    for key, (begin, end) in by_key.items():
        xid = begin["xid"]
        assert key == begin["id"] == end["id"] == "%d:%s" % (xid, end["commit_lsn"])
        assert begin["xid"] == end["xid"] == xid and begin["commit_lsn"] == end["commit_lsn"]
        assert begin["event_count"] is None and begin["data_collections"] is None
        records = published[end["commit_lsn"]]
        per_topic = {}
        for _, _, m in records:
            per_topic[m["topic"]] = per_topic.get(m["topic"], 0) + 1
        assert end["event_count"] == len(records)
        assert {d["data_collection"]: d["event_count"] for d in end["data_collections"]} == per_topic
    end_first = [vs[1] for vs in by_key.values() if vs[0]["xid"] == first][0]
    assert {d["data_collection"] for d in end_first["data_collections"]} == {outbox.topic("user"), outbox.topic("order"), cdc}


def checkpoints(kafka, outbox):
    """The checkpoint records of this test's relay (its slot), oldest first."""
    out = []
    for m in kafka.consume([relayctl.checkpoint_topic(outbox.slot)], timeout=30):
        v = json.loads(m["value"])
        if v.get("slot") == outbox.slot:
            out.append(v)
    return out


def test_a_split_transaction_keeps_counting_across_its_kafka_transactions(outbox, kafka):
    txtopic = outbox.prefix + ".transactions"
    start(outbox, extra_relay='transaction_max_records = 50; transaction_topic = "%s";' % txtopic)
    xid = write_in_one_transaction(outbox.db, [
        "SELECT outbox.publish('user', 'k' || (i %% 10), 'Changed', jsonb_build_object('seq', i)) "
        "FROM generate_series(0, 499) i".replace("%%", "%")])
    msgs = kafka.consume([outbox.topic("user")], until=500, timeout=90)
    assert sorted(context(m)[2] for m in msgs) == list(range(500))
    assert {context(m)[0] for m in msgs} == {xid}
    meta = transaction_records(kafka, txtopic, 2)
    assert [v["status"] for _, v in meta] == ["BEGIN", "END"]
    assert meta[1][1]["event_count"] == 500
    parts = [c for c in checkpoints(kafka, outbox) if c.get("partial", {}).get("xid") == xid]
    assert parts, "the transaction was not split (no checkpoint inside it)"
    # Each part's checkpoint kept how many records the transaction had in Kafka by then: every
    # row gives one record here, so as many as rows read.
    assert all(c["txn_counts"]["records"] == c["partial"]["rows"] for c in parts)


def test_records_carry_no_transaction_context_unless_asked_and_the_topic_still_counts(outbox, kafka):
    txtopic = outbox.prefix + ".transactions"
    outbox.reconfigure(extra_relay='transaction_topic = "%s";' % txtopic)
    outbox.relay.start()
    outbox.relay.wait_streaming()
    write_in_one_transaction(outbox.db, [publish("user", "u1", 1), publish("user", "u2", 2)])
    msgs = kafka.consume([outbox.topic("user")], until=2, timeout=60)
    assert len(msgs) == 2 and [context(m) for m in msgs] == [None, None]
    meta = transaction_records(kafka, txtopic, 2)
    assert meta[1][1]["event_count"] == 2


def kill_inside_a_split_transaction(outbox, kafka, txtopic, rows):
    """Starts a relay that splits one transaction of rows outbox rows (txtopic: its transaction
    topic, or None), freezes it at the first
    checkpoint inside it (SIGSTOP, then SIGKILL). On a loaded machine the transaction may still
    end first: returns whether the last checkpoint is inside it."""
    # A small in-flight limit slows the relay down, so that the kill lands inside the transaction.
    start(outbox, extra_relay='transaction_max_records = 1000; max_in_flight_bytes = 65536; '
                              'transaction_topic = "%s";' % txtopic if txtopic else
                              'transaction_max_records = 1000; max_in_flight_bytes = 65536;')
    outbox.db.execute(
        "INSERT INTO outbox.events (aggregate_type, aggregate_id, event_type, payload) "
        "SELECT 'user', 'k' || (i %% 100), 'Bulk', jsonb_build_object('seq', i) "
        "FROM generate_series(1, %d) i" % rows)
    mine = lambda ms: any(json.loads(m["value"]).get("slot") == outbox.slot
                          and "partial" in json.loads(m["value"]) for m in ms)
    assert mine(kafka.consume([relayctl.checkpoint_topic(outbox.slot)], until=mine, timeout=180)), \
        "no checkpoint inside the transaction within 180 s"
    outbox.relay.proc.send_signal(signal.SIGSTOP)
    outbox.relay.proc.send_signal(signal.SIGKILL)
    outbox.relay.wait_exit(30)
    inside = "partial" in checkpoints(kafka, outbox)[-1]
    print("the kill landed %s the transaction" % ("inside" if inside else "after the end of"))
    return inside


def test_a_crash_inside_a_split_transaction_leaves_no_end_without_its_events_and_no_duplicates(outbox, kafka):
    txtopic = outbox.prefix + ".transactions"
    rows = 30000
    # What follows holds wherever the kill landed; only the crash-time checks depend on it.
    inside = kill_inside_a_split_transaction(outbox, kafka, txtopic, rows)
    # What a read_committed consumer sees at the crash: an END only with all its events.
    meta = [json.loads(m["value"]) for m in kafka.consume([txtopic], timeout=10)]
    seen = kafka.consume([outbox.topic("user")], timeout=30)
    assert [v["status"] for v in meta] in (["BEGIN"], ["BEGIN", "END"])
    if len(meta) == 2:
        assert len(seen) == rows
    if inside:
        assert meta and len(seen) < rows
    outbox.relay.start()
    outbox.relay.wait_streaming(60)
    msgs = kafka.consume([outbox.topic("user")], until=rows, timeout=300)
    msgs = kafka.consume([outbox.topic("user")], timeout=60)
    ids = [dict(m["headers"])["event_id"] for m in msgs]
    assert len(ids) == len(set(ids)) == rows
    assert sorted(context(m)[2] for m in msgs) == list(range(rows))
    # The restart counted on where the crash left off: the n-th row (seq n) has index n - 1.
    assert all(context(m)[2] == json.loads(m["value"])["seq"] - 1 for m in msgs)
    meta = transaction_records(kafka, txtopic, 2)
    assert len(kafka.consume([txtopic], timeout=5)) == 2
    assert [v["status"] for _, v in meta] == ["BEGIN", "END"]
    assert meta[1][1]["event_count"] == rows
    assert meta[1][1]["data_collections"] == [{"data_collection": outbox.topic("user"), "event_count": rows}]
    assert outbox.relay.stop() == 0


def test_counts_of_a_split_transaction_that_do_not_match_its_checkpoint_stop_the_relay(outbox, kafka):
    """Counting from 0 again would repeat (commit LSN, index) pairs already in Kafka."""
    if not kill_inside_a_split_transaction(outbox, kafka, outbox.prefix + ".transactions", 30000):
        pytest.skip("the transaction ended before the kill (a loaded machine)")
    last = [m for m in kafka.consume([relayctl.checkpoint_topic(outbox.slot)], timeout=30)
            if json.loads(m["value"]).get("slot") == outbox.slot][-1]
    value = json.loads(last["value"])
    value["txn_counts"]["rows"] += 1
    p = kafka.producer()
    p.produce(relayctl.checkpoint_topic(outbox.slot), key=last["key"], value=json.dumps(value))
    p.flush(30)
    outbox.relay.start()
    assert outbox.relay.wait_exit(120) != 0
    errors = [l for l in outbox.relay.log().splitlines() if "do not match its" in l]
    assert len(errors) == 1 and "the relay stops" in errors[0], outbox.relay.log()[-2000:]


def test_a_transaction_topic_turned_on_inside_a_split_transaction_gets_its_begin_and_end(outbox, kafka):
    """The first parts went out with the topic off: the restart sends the BEGIN they did not
    send before the next record, and END counts every part."""
    rows = 30000
    if not kill_inside_a_split_transaction(outbox, kafka, None, rows):
        pytest.skip("the transaction ended before the kill (a loaded machine)")
    txtopic = outbox.prefix + ".transactions"
    start(outbox, extra_relay='transaction_topic = "%s";' % txtopic)
    msgs = kafka.consume([outbox.topic("user")], until=rows, timeout=300)
    assert len(msgs) == rows
    meta = transaction_records(kafka, txtopic, 2)
    assert [v["status"] for _, v in meta] == ["BEGIN", "END"]
    assert meta[1][1]["event_count"] == rows
    assert outbox.relay.stop() == 0


@pytest.mark.parametrize("other", ["checkpoint_topic", "dead_letter_topic"])
def test_a_transaction_topic_named_like_the_checkpoint_or_dead_letter_topic_is_a_config_error(outbox, other):
    outbox.reconfigure(extra_relay='%s = "shared.topic"; transaction_topic = "shared.topic";' % other)
    code, out = relayctl.run_once(["check-config", outbox.config_path])
    assert code == 2, out
    line = [l for l in out.splitlines() if "relay.transaction_topic" in l]
    assert line and line[0].startswith(outbox.config_path + ":"), out
    assert int(line[0].split(":")[1]) > 1, out  # the line of the setting
    assert '"shared.topic" is also relay.%s' % other in line[0]


def test_preflight_checks_the_transaction_topic(outbox, kafka):
    txtopic = outbox.prefix + ".transactions"
    outbox.reconfigure(extra_relay='transaction_topic = "%s"; auto_create_topics = false;' % txtopic)
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert "FAIL topic %s" % txtopic in out, out
    kafka.create_topic(txtopic, partitions=1)
    code, out = relayctl.run_once(["preflight", outbox.config_path], timeout=60)
    assert "ok   topic %s" % txtopic in out, out
