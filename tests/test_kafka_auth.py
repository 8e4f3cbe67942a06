# Broker security failures: wrong SASL credentials, topic and transactional-id authorization denied.
"""One broker for the module with a SASL_PLAINTEXT listener (PLAIN) and the StandardAuthorizer
(tests/harness.py); the relay connects as a SASL user that may do only what ACLs allow."""
import os
import subprocess
import uuid

import pytest

import harness
import relayctl

PASSWORDS = {"relay": "relay-secret", "notxn": "notxn-secret", "minimal": "minimal-secret",
             "nocreate": "nocreate-secret", "noread": "noread-secret"}


@pytest.fixture(scope="module")
def sasl_kafka():
    """A broker of this module: SASL_PLAINTEXT (PLAIN) for the relay, authorizer on. User relay
    may do everything; user notxn everything but use a transactional id."""
    server = harness.Kafka(sasl_users=PASSWORDS)
    try:
        server.start()
        common = ["--operation", "All", "--topic", "*", "--group", "*", "--cluster"]
        server.acl("--add", "--allow-principal", "User:relay", "--transactional-id", "*", *common)
        server.acl("--add", "--allow-principal", "User:notxn", *common)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def sasl_outbox(db, sasl_kafka, tmp_path, request):
    """A database with the outbox schema and a relay configured for the SASL listener (user
    relay, password from the systemd credential kafka-sasl-password); .configure(user, password)."""
    o = type("SaslOutbox", (), {})()
    o.db = db
    o.slot = "relay_" + uuid.uuid4().hex[:10]
    o.prefix = "t" + uuid.uuid4().hex[:10]
    o.config_path = str(tmp_path / "relay.conf")
    creds = tmp_path / "creds"
    creds.mkdir()

    def configure(user="relay", password=PASSWORDS["relay"], extra_relay=""):
        (creds / "kafka-sasl-password").write_text(password)
        relayctl.write_config(o.config_path, db.dsn, sasl_kafka.sasl_bootstrap, o.slot,
                              o.prefix + ".${aggregate_type}", extra_relay=extra_relay,
                              extra_kafka='security_protocol = "SASL_PLAINTEXT"; sasl_mechanisms = "PLAIN"; '
                                          'sasl_username = "%s";' % user)
    o.configure = configure
    relayctl.install_outbox(db)
    configure()
    o.relay = relayctl.Relay(o.config_path, str(tmp_path), env={"CREDENTIALS_DIRECTORY": str(creds)})
    yield o
    relayctl.end_of_test(o.relay, request)


def confirmed(outbox):
    """The slot's confirmed_flush_lsn as text ('' when the slot does not exist)."""
    rows = outbox.db.query("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                           (outbox.slot,))
    return rows[0][0] or "" if rows else ""


def publish(outbox, aggregate_type, n, start=0):
    """n events of aggregate_type, each in its own transaction; returns their keys."""
    keys = []
    for i in range(start, start + n):
        outbox.db.execute("SELECT outbox.publish(%s, %s, 'T', '{}')", (aggregate_type, "k-%d" % i))
        keys.append(("k-%d" % i).encode())
    return keys


def preflight(outbox):
    """outbox-relay preflight with the relay's credentials directory; (exit code, output)."""
    p = subprocess.run([relayctl.RELAY_BIN, "preflight", outbox.config_path], env=dict(os.environ, **outbox.relay.env),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
    return p.returncode, p.stdout.decode(errors="replace")


def test_wrong_password_is_named_retried_and_the_slot_stays(sasl_outbox, sasl_kafka):
    """A wrong SASL password: an error line naming authentication (again at each retry), nothing
    read or confirmed meanwhile; with the right password the waiting rows go out once."""
    o = sasl_outbox
    topic = o.prefix + ".a"
    o.relay.start()
    o.relay.wait_streaming()
    first = publish(o, "a", 2)
    assert sorted(m["key"] for m in sasl_kafka.consume([topic], until=2, timeout=60)) == first
    assert o.relay.stop() == 0
    at = confirmed(o)
    o.configure(password="wrong-password")
    code, out = preflight(o)
    assert code != 0 and "Authentication failed" in out, out
    waiting = publish(o, "a", 2, start=2)
    since = len(o.relay.log())
    o.relay.start()
    line = "authentication failed: "
    harness.wait_for(lambda: o.relay.log()[since:].count(line) >= 2 or o.relay.proc.poll() is not None, 90,
                     what="two authentication failures")
    assert o.relay.proc.poll() is None, "relay exited:\n" + o.relay.log()[-3000:]
    errors = [l for l in o.relay.log()[since:].splitlines() if line in l]
    assert "Invalid username or password" in errors[0] and "kafka-sasl-password" in errors[0]
    assert "wrong-password" not in o.relay.log()
    assert confirmed(o) == at
    assert o.relay.stop(timeout=10) in (0, 1)  # nothing open yet: it stops at once
    o.configure()
    o.relay.start()
    o.relay.wait_streaming()
    got = sasl_kafka.consume([topic], until=4, timeout=60)
    assert sorted(m["key"] for m in got) == first + waiting
    assert o.relay.stop() == 0


def test_topic_write_denied_stops_before_the_row(sasl_outbox, sasl_kafka):
    """An ACL denies writing to one event topic: the relay stops with a line naming the
    authorization failure; the slot stays before that row, and the rows before it are out."""
    o = sasl_outbox
    denied = o.prefix + ".denied"
    sasl_kafka.acl("--add", "--deny-principal", "User:relay", "--operation", "Write", "--topic", denied)
    o.relay.start()
    o.relay.wait_streaming()
    ok = publish(o, "ok", 2)
    assert sorted(m["key"] for m in sasl_kafka.consume([o.prefix + ".ok"], until=2, timeout=60)) == ok
    before = current_lsn(o)
    publish(o, "denied", 1, start=10)
    assert o.relay.wait_exit(90) == 1
    log = o.relay.log()
    assert "Topic authorization failed" in log and "needs an ACL allowing WRITE and DESCRIBE on the topic" in log, \
        log[-3000:]
    assert 'Failed to add partition "%s"' % denied in log  # librdkafka's line names the topic
    assert lsn_int(confirmed(o)) <= before
    assert not sasl_kafka.consume([denied], timeout=5)
    # Still denied at the next start: the same row stops it again (never skipped).
    o.relay.start()
    assert o.relay.wait_exit(90) == 1
    assert lsn_int(confirmed(o)) <= before


def test_transactional_id_denied_is_one_clear_error(sasl_outbox, sasl_kafka):
    """A user without rights on transactional ids (exactly-once needs one): exit 1 with a line
    naming the transactional id and the authorization failure; the slot not moved."""
    o = sasl_outbox
    o.configure(user="notxn", password=PASSWORDS["notxn"])
    o.relay.start()
    assert o.relay.wait_exit(90) == 1
    errors = [l for l in o.relay.log().splitlines() if " error " in l]
    assert any("transactional.id" in l and "authorization failed" in l.lower() and
               "needs an ACL allowing WRITE and DESCRIBE on the transactional id" in l for l in errors), errors
    assert confirmed(o) == ""  # it stopped before it created the slot


def test_the_documented_minimal_acls_are_enough(sasl_outbox, sasl_kafka):
    """A principal with only the ACLs docs/operations.md lists (exactly-once, topics created by
    the relay): events, a dead letter and a restart from the checkpoint all work, with no
    authorization error in the log."""
    o = sasl_outbox
    checkpoints, dlq = o.prefix + "-checkpoints", o.prefix + "-dead-letters"
    user = ["--add", "--allow-principal", "User:minimal"]
    # Event, checkpoint and dead-letter topics: write, describe, create (one prefix here).
    sasl_kafka.acl(*user, "--operation", "Write", "--operation", "Describe", "--operation", "Create",
                   "--resource-pattern-type", "prefixed", "--topic", o.prefix)
    # The checkpoint topic is read back at start.
    sasl_kafka.acl(*user, "--operation", "Read", "--topic", checkpoints)
    # The transactional id: outbox-relay-<system id>-<slot>.
    sasl_kafka.acl(*user, "--operation", "Write", "--operation", "Describe",
                   "--resource-pattern-type", "prefixed", "--transactional-id", "outbox-relay-")
    o.configure(user="minimal", password=PASSWORDS["minimal"],
                extra_relay='checkpoint_topic = "%s"; dead_letter_topic = "%s";' % (checkpoints, dlq))
    o.relay.start()
    o.relay.wait_streaming()
    first = publish(o, "a", 2)
    assert sorted(m["key"] for m in sasl_kafka.consume([o.prefix + ".a"], until=2, timeout=60)) == first
    publish(o, "not a topic", 1)  # a space: no valid topic name, so it is dead-lettered
    assert len(sasl_kafka.consume([dlq], until=1, timeout=60)) == 1
    assert o.relay.stop() == 0
    o.relay.start()
    o.relay.wait_streaming()
    more = publish(o, "a", 2, start=2)
    got = sasl_kafka.consume([o.prefix + ".a"], until=4, timeout=60)
    assert sorted(m["key"] for m in got) == first + more
    assert o.relay.stop() == 0
    assert "uthoriz" not in o.relay.log(), o.relay.log()[-3000:]


def limited_user(o, sasl_kafka, name, topic_operations):
    """Configures the relay as SASL user name, allowed topic_operations on the topics of the
    test's prefix (its checkpoint topic among them) and its transactional id; returns the
    AclCommand arguments that add more for that user, and the checkpoint topic."""
    user = ["--add", "--allow-principal", "User:" + name]
    ops = [a for op in topic_operations for a in ("--operation", op)]
    sasl_kafka.acl(*user, *ops, "--resource-pattern-type", "prefixed", "--topic", o.prefix)
    sasl_kafka.acl(*user, "--operation", "Write", "--operation", "Describe",
                   "--resource-pattern-type", "prefixed", "--transactional-id", "outbox-relay-")
    checkpoints = o.prefix + "-checkpoints"
    o.configure(user=name, password=PASSWORDS[name], extra_relay='checkpoint_topic = "%s";' % checkpoints)
    return user, checkpoints


def test_no_slot_before_its_checkpoint_topic(sasl_outbox, sasl_kafka):
    """A principal that may not create the checkpoint topic: the relay says so and retries
    without creating the slot, so a restart after the ACL is added starts cleanly (a slot without
    its checkpoint topic is refused, as a deleted topic)."""
    o = sasl_outbox
    user, checkpoints = limited_user(o, sasl_kafka, "nocreate", ["Write", "Describe", "Read"])
    o.relay.start()
    o.relay.wait_log("retrying in", timeout=60)
    assert "Authorization failed" in o.relay.log() or "authorization failed" in o.relay.log().lower()
    assert confirmed(o) == ""  # no slot yet
    o.relay.kill()
    sasl_kafka.acl(*user, "--operation", "Create", "--resource-pattern-type", "prefixed", "--topic", o.prefix)
    o.relay.start()
    o.relay.wait_streaming()
    sent = publish(o, "a", 2)
    assert sorted(m["key"] for m in sasl_kafka.consume([o.prefix + ".a"], until=2, timeout=60)) == sent
    assert o.relay.stop() == 0


def test_checkpoint_read_denied_names_the_acl(sasl_outbox, sasl_kafka):
    """A principal that may write its checkpoint topic but not read it: the first start (an
    empty topic) streams; the next one must read the checkpoint back, says which ACL it needs
    and retries; with the ACL it resumes from the checkpoint."""
    o = sasl_outbox
    user, checkpoints = limited_user(o, sasl_kafka, "noread", ["Write", "Describe", "Create"])
    o.relay.start()
    o.relay.wait_streaming()
    first = publish(o, "a", 1)
    assert [m["key"] for m in sasl_kafka.consume([o.prefix + ".a"], until=1, timeout=60)] == first
    assert o.relay.stop() == 0
    since = len(o.relay.log())
    o.relay.start()
    o.relay.wait_log("needs an ACL allowing READ on the topic", timeout=60, since=since)
    assert "retrying" in o.relay.log()[since:]
    assert o.relay.proc.poll() is None
    sasl_kafka.acl(*user, "--operation", "Read", "--topic", checkpoints)
    o.relay.wait_streaming(timeout=120)  # after the retry's backoff
    assert "checkpoint in Kafka" in o.relay.log()[since:]
    more = publish(o, "a", 1, start=1)
    got = sasl_kafka.consume([o.prefix + ".a"], until=2, timeout=60)
    assert sorted(m["key"] for m in got) == first + more
    assert o.relay.stop() == 0


def lsn_int(text):
    if not text:
        return 0
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def current_lsn(outbox):
    return lsn_int(outbox.db.query("SELECT pg_current_wal_lsn()::text")[0][0])
