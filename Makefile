# Makefile: builds relay/outbox-relay, runs the tests (make check), the demo (make demo), installs.

VERSION := 0.1.0
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR = $(PREFIX)/bin
SHAREDIR = $(PREFIX)/share/outbox-relay
DOCDIR = $(PREFIX)/share/doc/outbox-relay
SYSCONFDIR ?= /etc
MANDIR = $(PREFIX)/share/man
# systemd units: Debian's /lib/systemd/system for PREFIX=/usr, else PREFIX/lib/systemd/system
# (both are on systemd's search path); SYSTEMDUNITDIR=... overrides.
ifeq ($(PREFIX),/usr)
SYSTEMDUNITDIR ?= /lib/systemd/system
else
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
endif

CC ?= cc
PKGS = libpq rdkafka jansson libconfig libmicrohttpd avro-c libcurl libcrypto nettle
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# libsystemd is optional: with it relay/notify.c talks to systemd (Type=notify, watchdog); without
# it, or with WITH_SYSTEMD=no (then `make clean`), the notifications are no-ops.
WITH_SYSTEMD ?= auto
ifneq ($(WITH_SYSTEMD),no)
ifeq ($(shell pkg-config --exists libsystemd && echo yes),yes)
PKG_CFLAGS += -DHAVE_LIBSYSTEMD $(shell pkg-config --cflags libsystemd)
PKG_LIBS += $(shell pkg-config --libs libsystemd)
endif
endif
WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CFLAGS ?= -O2 -g
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS) -DRELAY_VERSION='"$(VERSION)"'
SAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

# Every module but main.c goes into a library the unit tests link against.
LIB_SRCS = $(filter-out relay/main.c,$(wildcard relay/*.c))
HDRS = $(wildcard relay/*.h)
UNIT_SRCS = $(wildcard tests/unit/test_*.c)

REL_OBJS = $(patsubst relay/%.c,build/rel/%.o,$(LIB_SRCS))
SAN_OBJS = $(patsubst relay/%.c,build/san/%.o,$(LIB_SRCS))
UNIT_BINS = $(patsubst tests/unit/%.c,build/rel/%,$(UNIT_SRCS))
UNIT_SAN_BINS = $(patsubst tests/unit/%.c,build/san/%,$(UNIT_SRCS))

PYTHON ?= /usr/bin/python3

.PHONY: all deps check check-kafka4 unit demo install uninstall clean bench bench-debezium microbench sanitize \
	crash-loop fuzz fuzz-smoke soak ha-soak deb deb-test systemd-test
all: relay/outbox-relay

build/rel/%.o: relay/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/san/%.o: relay/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c -o $@ $<

# notify.c differs with and without libsystemd (WITH_SYSTEMD above): rebuild it when this file changes.
build/rel/notify.o build/san/notify.o build/fuzz/notify.o: Makefile

relay/outbox-relay: build/rel/main.o $(REL_OBJS)
	$(CC) $(ALL_CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

build/san/outbox-relay: build/san/main.o $(SAN_OBJS)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -o $@ $^ $(PKG_LIBS)

build/rel/test_%: tests/unit/test_%.c $(REL_OBJS) tests/unit/unit.h
	$(CC) $(ALL_CFLAGS) -Irelay -o $@ $< $(REL_OBJS) $(PKG_LIBS) -lcmocka

build/san/test_%: tests/unit/test_%.c $(SAN_OBJS) tests/unit/unit.h
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Irelay -o $@ $< $(SAN_OBJS) $(PKG_LIBS) -lcmocka

sanitize: build/san/outbox-relay $(UNIT_SAN_BINS)

# CPU per row of decode, route and produce, without servers (tests/bench/micro.c).
build/rel/micro: tests/bench/micro.c $(REL_OBJS)
	$(CC) $(ALL_CFLAGS) -Irelay -o $@ $< $(REL_OBJS) $(PKG_LIBS)

microbench: build/rel/micro
	build/rel/micro $${MICRO_ROWS:-1000000}

# The mock Kafka cluster of the fault-injection tests (tests/test_faults.py).
build/rel/mock_kafka: tests/faults/mock_kafka.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(PKG_LIBS)

# libFuzzer targets (tests/fuzz/fuzz_*.c) over the modules built with clang, coverage, ASan+UBSan.
FUZZ_CC ?= clang
FUZZ_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_OBJS = $(patsubst relay/%.c,build/fuzz/%.o,$(LIB_SRCS)) build/fuzz/jansson_oracle.o
FUZZ_BINS = $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_SECONDS ?= 10
# Kept (not intermediate files of the pattern rules), so that make does not rebuild them each time.
.SECONDARY: $(FUZZ_OBJS)

build/fuzz/%.o: relay/%.c $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/jansson_oracle.o: tests/fuzz/jansson_oracle.c tests/fuzz/jansson_oracle.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -c -o $@ $<

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h tests/fuzz/jansson_oracle.h $(FUZZ_OBJS)
	$(FUZZ_CC) $(ALL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -Irelay -o $@ $< $(FUZZ_OBJS) $(PKG_LIBS)

# Each target for FUZZ_SECONDS on a copy of its seed corpus (build/fuzz/work/, kept between runs).
fuzz: deps
	@$(MAKE) --no-print-directory $(FUZZ_BINS)
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# A few seconds each, all at once (make check runs it).
fuzz-smoke: $(FUZZ_BINS)
	@FUZZ_JOBS=$${FUZZ_JOBS:-$(words $(FUZZ_TARGETS))} tests/fuzz/run.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# Installs missing Debian packages and the Kafka jars (quiet when all is there).
deps:
	@tests/install-deps.sh

# All tests: unit tests (plain and ASan+UBSan), then integration tests against real servers.
check: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS) sanitize build/rel/mock_kafka $(FUZZ_BINS)
	@tests/run-all.sh

# The whole integration suite against a Kafka 4.4.0 broker (opt-in, about 20 min on 2 cores;
# make check runs a representative subset of it, see tests/run-all.sh).
check-kafka4: deps
	@$(MAKE) --no-print-directory all build/rel/mock_kafka
	KAFKA_VERSION=4.4.0 $(PYTHON) -m pytest -p no:cacheprovider -q tests/

# The long kill -9 loop (opt-in; make check runs 50 kills).
crash-loop: deps all
	CRASH_LOOPS=$${CRASH_LOOPS:-500} $(PYTHON) -m pytest -p no:cacheprovider -s -q \
		tests/test_exactly_once.py -k kill_9

# An hour (SOAK_SECONDS) of steady load with periodic faults; RSS over time and rows lost or
# duplicated in build/soak/ (opt-in, not part of make check).
soak: deps all
	$(PYTHON) tests/soak.py

# Patroni failovers again and again (opt-in): HA_ROUNDS rounds, kill -9 and switchover in turn.
HA_ROUNDS ?= 10
ha-soak: deps all
	HA_ROUNDS=$(HA_ROUNDS) $(PYTHON) -m pytest -q -s tests/test_ha.py -k repeated

unit: $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $$t || exit 1; done

demo: deps
	@$(MAKE) --no-print-directory all
	@$(PYTHON) tests/demo.py

bench: deps all
	@$(PYTHON) tests/bench/run.py

# Opt-in: the relay next to Debezium (Kafka Connect and its jars from Maven Central), docs/performance.md.
bench-debezium: deps all
	@$(PYTHON) tests/bench/vs_debezium.py

install: relay/outbox-relay
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHAREDIR)/sql $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSCONFDIR)/outbox-relay $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SHAREDIR)/prometheus $(DESTDIR)$(SHAREDIR)/grafana
	install -m 0755 relay/outbox-relay $(DESTDIR)$(BINDIR)/outbox-relay
	install -m 0644 sql/*.sql $(DESTDIR)$(SHAREDIR)/sql/
	install -m 0644 conf/outbox-relay.conf.example $(DESTDIR)$(SHAREDIR)/
	install -m 0644 conf/prometheus/outbox-relay-alerts.yml $(DESTDIR)$(SHAREDIR)/prometheus/
	install -m 0644 conf/grafana/outbox-relay.json $(DESTDIR)$(SHAREDIR)/grafana/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 docs/outbox-relay.8 $(DESTDIR)$(MANDIR)/man8/
	@# The unit names /usr/local/bin and /etc: point it at this BINDIR and SYSCONFDIR.
	@mkdir -p build
	sed -e 's|/usr/local/bin/outbox-relay|$(BINDIR)/outbox-relay|g' \
		-e 's|/etc/outbox-relay/|$(SYSCONFDIR)/outbox-relay/|g' \
		systemd/outbox-relay@.service > build/outbox-relay@.service
	install -m 0644 build/outbox-relay@.service $(DESTDIR)$(SYSTEMDUNITDIR)/

# The Debian package (debian/, debhelper) in build/deb/, built from a copy of this tree in
# build/deb/src; installs its build dependencies and lintian first. DEB_VERSION overrides the
# package version (VERSION above by default).
DEB_VERSION ?= $(VERSION)
deb:
	@DEB_VERSION=$(DEB_VERSION) tests/build-deb.sh

# Installs, upgrades (over a build with a lower version), removes and purges the package on this
# machine (opt-in: it puts /usr/bin/outbox-relay in place until the purge).
deb-test:
	@tests/test_deb.sh

# The unit under a real systemd: a Debian 12 container booted with systemd-nspawn, the package
# installed in it, outbox-relay@app run against the harness's PostgreSQL and Kafka (opt-in, slow).
systemd-test: deps
	@$(MAKE) --no-print-directory deb
	$(PYTHON) tests/systemd_run.py

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/outbox-relay $(DESTDIR)$(MANDIR)/man8/outbox-relay.8 \
		$(DESTDIR)$(SYSTEMDUNITDIR)/outbox-relay@.service
	rm -rf $(DESTDIR)$(SHAREDIR) $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build relay/outbox-relay
