# pytest fixtures: one PostgreSQL, one Kafka and (when asked for) one schema registry per session, and a fresh database per test.
import os
import re
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# fastavro (for confluent-kafka's AvroDeserializer) comes from PyPI into .cache/python (install-deps.sh).
sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "python"))
import harness  # noqa: E402

_servers = []  # session servers, restarted after a test that left them stopped


@pytest.fixture(scope="session")
def pg():
    """A private PostgreSQL server (harness.Postgres) shared by the whole session."""
    server = harness.Postgres()
    try:
        server.start()
        _servers.append(server)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def kafka():
    """A private single-node Kafka broker (harness.Kafka) shared by the whole session."""
    server = harness.Kafka()
    try:
        server.start()
        _servers.append(server)
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def registry():
    """A private schema registry (harness.SchemaRegistry: Apicurio, Confluent's API at .url,
    compatibility BACKWARD) shared by the whole session; built into .cache on first use."""
    server = harness.SchemaRegistry()
    try:
        server.start()
        _servers.append(server)
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def db(pg, request):
    """A fresh database (harness.Database: .name, .dsn, .connect(), .execute(), .query()) dropped after the test."""
    base = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    database = pg.create_database("t_%s_%s" % (base, uuid.uuid4().hex[:8]))
    yield database
    if pg.dir is None:  # the servers were already cleaned up (interrupted run)
        return
    pg.ensure_running()
    pg.drop_database(database.name)


@pytest.fixture(autouse=True)
def _restart_stopped_servers():
    """After each test, start again any session server that the test stopped or killed."""
    yield
    for server in _servers:
        server.ensure_running()


@pytest.fixture
def outbox(db, kafka, tmp_path, request):
    """A database with the outbox schema and a relay configured for it (not started).

    Yields an object with .db, .relay (relayctl.Relay), .topic(aggregate_type), .slot,
    .config_path and .reconfigure(**extra) to rewrite the config. Stops the relay afterwards
    and prints its log when the test failed.
    """
    import relayctl

    class Outbox:
        pass

    o = Outbox()
    o.db = db
    o.slot = "relay_" + uuid.uuid4().hex[:10]
    o.prefix = "t" + uuid.uuid4().hex[:10]
    o.config_path = str(tmp_path / "relay.conf")
    o.topic = lambda aggregate_type: "%s.%s" % (o.prefix, aggregate_type)

    def reconfigure(**extra):
        relayctl.write_config(o.config_path, db.dsn, kafka.bootstrap, o.slot,
                              o.prefix + ".${aggregate_type}", **extra)

    o.reconfigure = reconfigure
    relayctl.install_outbox(db)
    reconfigure()
    o.relay = relayctl.Relay(o.config_path, str(tmp_path))
    yield o
    relayctl.end_of_test(o.relay, request)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item, so fixtures can tell a failure."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
