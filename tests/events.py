# events.py: writing outbox events in tests and checking what a read_committed consumer got.
import json
import random
import threading

AGGREGATES = ["user", "document", "liveness"]


def murmur2_partition(key, partitions):
    """The Java client's default partition for a key: toPositive(murmur2(key)) % partitions."""
    seed, m, r = 0x9747B28C, 0x5BD1E995, 24
    length = len(key)
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = key[length - rest:]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def write_events(db, transactions, per_txn, keys=20, start=0, other_table=False):
    """Commits `transactions` transactions of `per_txn` outbox rows; returns {event id: row}.

    Each payload carries a global sequence number, so per-key commit order can be checked.
    With other_table, every transaction also writes rows of a table the relay does not read.
    """
    conn = db.connect(autocommit=False)
    cur = conn.cursor()
    if other_table:
        cur.execute("CREATE TABLE IF NOT EXISTS public.other (id bigserial PRIMARY KEY, note text)")
        conn.commit()
    rows = {}
    seq = start
    for _ in range(transactions):
        for _ in range(per_txn):
            agg = AGGREGATES[seq % len(AGGREGATES)]
            key = "%s-%d" % (agg, seq % keys)
            payload = json.dumps({"seq": seq, "key": key})
            cur.execute("SELECT outbox.publish(%s, %s, 'Changed', %s::jsonb, %s::jsonb)",
                        (agg, key, payload, json.dumps({"tenant": "t1", "seq": seq})))
            rows[cur.fetchone()[0]] = {"agg": agg, "key": key, "seq": seq}
            if other_table:
                cur.execute("INSERT INTO public.other (note) VALUES ('not an event')")
            seq += 1
        conn.commit()
    conn.close()
    return rows


def consume_events(kafka, outbox, count, timeout=120):
    topics = [outbox.topic(a) for a in AGGREGATES]
    return kafka.consume(topics, until=count, timeout=timeout)


def assert_exactly_once_in_order(msgs, rows, outbox):
    """Every row arrived once, with its topic, key and headers, in commit order per key."""
    seen = {}
    last_seq = {}
    for m in msgs:
        headers = dict(m["headers"])
        event_id = headers["event_id"].decode()
        assert event_id not in seen, "duplicate event %s" % event_id
        seen[event_id] = m
        row = rows[event_id]
        assert m["topic"] == outbox.topic(row["agg"])
        assert m["key"] == row["key"].encode()
        assert headers["event_type"] == b"Changed"
        assert headers["tenant"] == b"t1"
        payload = json.loads(m["value"])
        assert payload["seq"] == row["seq"]
        assert last_seq.get(row["key"], -1) < row["seq"], "out of order for key %s" % row["key"]
        last_seq[row["key"]] = row["seq"]
    missing = set(rows) - set(seen)
    assert not missing, "%d events missing" % len(missing)


def tally_writers_events(msgs, writers, check=None):
    """Counts what a read_committed consumer got against what Writers committed: returns
    (duplicates, lost, rolled back, phantoms). Each first sight of a committed event is asserted
    to carry its key and to come after that key's earlier events; check(msg, key, seq), when
    given, asserts more of it (its payload)."""
    expected = writers.committed
    seen, last = set(), {}
    dups = rolled_back = phantoms = 0
    for m in msgs:
        eid = dict(m["headers"])["event_id"].decode()
        if eid in writers.rolled_back:
            rolled_back += 1
        elif eid not in expected:
            phantoms += 1
        elif eid in seen:
            dups += 1
        else:
            seen.add(eid)
            key, s = expected[eid]
            assert m["key"] == key.encode()
            if check:
                check(m, key, s)
            assert last.get(key, -1) < s, "key %s out of order" % key
            last[key] = s
    return dups, len(set(expected) - seen), rolled_back, phantoms


def slot_lsns(db, slot):
    """(confirmed_flush_lsn, current WAL lsn) as numbers."""
    r = db.query("SELECT confirmed_flush_lsn - '0/0', pg_current_wal_lsn() - '0/0' "
                 "FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    return (int(r[0][0]) if r and r[0][0] is not None else 0), int(r[0][1]) if r else 0


class Writers:
    """Several writer threads committing (and sometimes rolling back) outbox transactions.

    Each writer owns its keys, so the commit order of a key is its writer's order. committed
    maps event id -> (key, sequence); rolled_back holds ids of events that must never appear.
    """

    def __init__(self, db, outbox, count=3, max_rows=8, gen=0, first_seq=0, savepoints=False,
                 aggregate="user", event_type="Changed", pause=0.0):
        """first_seq: the first sequence number of each writer; writers of the same gen write
        the same keys, so a later set of them continues those keys' order when its first_seq
        is above every seq the earlier set wrote. savepoints: every other row is written under a
        savepoint (its xmin is the savepoint's own xid), one such row in five rolled back to it.
        aggregate, event_type: of every event (payload {"g", "w", "seq"}); pause: seconds each
        writer waits after a transaction (0: as fast as it goes)."""
        self.db, self.outbox, self.gen, self.first_seq = db, outbox, gen, first_seq
        self.savepoints = savepoints
        self.aggregate, self.event_type, self.pause = aggregate, event_type, pause
        self.committed, self.rolled_back = {}, set()
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(w, max_rows)) for w in range(count)]

    def write_transaction(self, conn, rnd, w, max_rows, seq):
        """Writes one transaction of 1..max_rows events, rolled back one time in ten, and notes
        its ids as committed or rolled back; returns the next sequence number."""
        cur = conn.cursor()
        ids = []
        undone = []
        for n in range(rnd.randint(1, max_rows)):
            key = "g%d-w%d-k%d" % (self.gen, w, rnd.randint(0, 9))
            nested = self.savepoints and n % 2 == 1
            if nested:
                cur.execute("SAVEPOINT s")
            cur.execute("SELECT outbox.publish(%s, %s, %s, %s::jsonb)",
                        (self.aggregate, key, self.event_type, json.dumps({"g": self.gen, "w": w, "seq": seq})))
            row = (cur.fetchone()[0], key, seq)
            seq += 1
            if nested and rnd.random() < 0.2:
                cur.execute("ROLLBACK TO SAVEPOINT s")
                undone.append(row[0])
                continue
            if nested:
                cur.execute("RELEASE SAVEPOINT s")
            ids.append(row)
        with self.lock:
            self.rolled_back.update(undone)
        if rnd.random() < 0.1:
            conn.rollback()
            with self.lock:
                self.rolled_back.update(i for i, _, _ in ids)
        else:
            conn.commit()
            with self.lock:
                for i, key, s in ids:
                    self.committed[i] = (key, s)
        return seq

    def _run(self, w, max_rows):
        rnd = random.Random(w + self.first_seq)
        conn = self.db.connect(autocommit=False)
        seq = self.first_seq
        try:
            while not self.stop_flag.is_set():
                seq = self.write_transaction(conn, rnd, w, max_rows, seq)
                if self.pause:
                    self.stop_flag.wait(self.pause)
        except Exception as e:  # reported by stop()
            self.errors.append(e)
        finally:
            conn.close()

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.committed)

    def stop(self, timeout=120):
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout)  # bounded: a writer stuck in a commit must not hang the suite
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, "writers still in a statement after %d s: %s" % (timeout, stuck)
        assert not self.errors, self.errors
