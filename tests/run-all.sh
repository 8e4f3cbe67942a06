#!/usr/bin/env bash
# run-all.sh: runs every suite of `make check` and ends with one line "N passed, N failed".
set -u
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-/usr/bin/python3}
passed=0
failed=0
failed_suites=()

# Adds a cmocka binary's counts ("[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)").
run_cmocka() {
	local bin=$1 out p f rc
	out=$("$bin" 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -E '^\[ *(PASSED|FAILED|  ERROR) *\]|^\[==========\]' | sed "s|^|$bin: |"
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -n1)
	passed=$((passed + ${p:-0}))
	f=${f:-0}
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		printf '%s\n' "$out" | tail -n 20
		f=1 # crashed (for example a sanitizer report) before cmocka counted
	fi
	failed=$((failed + f))
	[ "$f" -eq 0 ] || failed_suites+=("$bin")
}

# Adds one test per libFuzzer target of `make fuzz-smoke` ("fuzz_X: passed" when it exited 0).
run_fuzz_smoke() {
	local out rc p f
	out=$(make --no-print-directory fuzz-smoke 2>&1)
	rc=$?
	printf '%s\n' "$out" | grep -E '^fuzz_[a-z0-9_]+: |^    ' || printf '%s\n' "$out" | tail -n 20
	p=$(printf '%s\n' "$out" | grep -cE '^fuzz_[a-z0-9_]+: passed')
	f=$(printf '%s\n' "$out" | grep -cE '^fuzz_[a-z0-9_]+: FAILED')
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1 # make failed before running them
	passed=$((passed + p))
	failed=$((failed + f))
	[ "$f" -eq 0 ] || failed_suites+=("fuzz-smoke")
}

# Adds one test each for `promtool check rules` and `promtool test rules` (the alerting rules
# of conf/prometheus and their unit tests in tests/prometheus; Debian's prometheus package).
run_promtool() {
	local what
	for what in "check rules conf/prometheus/outbox-relay-alerts.yml" \
		"test rules tests/prometheus/alerts_test.yml"; do
		if ! command -v promtool >/dev/null 2>&1; then
			echo "promtool $what: FAILED (promtool not installed: tests/install-deps.sh, Debian package prometheus)"
			failed=$((failed + 1))
			failed_suites+=("promtool ${what%% *} (promtool not installed)")
			continue
		fi
		# shellcheck disable=SC2086
		if promtool $what; then
			echo "promtool $what: passed"
			passed=$((passed + 1))
		else
			echo "promtool $what: FAILED"
			failed=$((failed + 1))
			failed_suites+=("promtool ${what%% *}")
		fi
	done
}

# Adds pytest's counts from its JUnit report.
run_pytest() {
	local name=$1 xml counts
	shift
	xml=build/pytest-$name.xml
	rm -f "$xml"
	"$PYTHON" -m pytest -p no:cacheprovider -q --junitxml="$xml" "$@"
	if [ ! -f "$xml" ]; then
		failed=$((failed + 1))
		failed_suites+=("pytest $name (no report)")
		return
	fi
	counts=$("$PYTHON" - "$xml" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad)
PY
)
	passed=$((passed + ${counts% *}))
	failed=$((failed + ${counts#* }))
	[ "${counts#* }" -eq 0 ] || failed_suites+=("pytest $name")
}

echo "== unit tests"
for t in build/rel/test_*; do [ -x "$t" ] && run_cmocka "$t"; done
echo "== unit tests under ASan+UBSan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in build/san/test_*; do [ -x "$t" ] && run_cmocka "$t"; done
echo "== fuzz smoke (libFuzzer targets of tests/fuzz, ${FUZZ_SMOKE_SECONDS:-10} s each)"
run_fuzz_smoke

echo "== alerting rules (promtool check rules, promtool test rules)"
run_promtool

echo "== integration tests (real PostgreSQL 15 + wal2json, real Kafka)"
run_pytest integration tests/

# The same relay against a Kafka 4.4.0 broker: one fast test each of the exactly-once crash loop
# (5 kills), fencing, a broker restart, SASL with the minimal ACLs and change capture (about 3 min;
# `make check-kafka4` runs the whole suite against 4.4.0).
echo "== integration tests against Kafka 4.4.0 (a representative subset)"
KAFKA_VERSION=4.4.0 CRASH_LOOPS=5 run_pytest kafka4 tests/test_exactly_once.py tests/test_kafka_auth.py \
	tests/test_capture.py \
	-k "kill_9_loop or fences_the_first or broker_restart_under_load or minimal_acls_are_enough or insert_update_delete_with_default_identity or key_change_is_a_delete"

echo "== integration tests with the ASan+UBSan relay"
RELAY_BIN=build/san/outbox-relay run_pytest sanitized tests/test_relay.py tests/test_capture.py \
	tests/test_snapshot.py tests/test_backfill.py tests/test_capture_differential.py \
	tests/test_active_passive.py tests/test_privacy.py tests/test_txn_context.py \
	-k "many_transactions or full_identity or types or key_change or initial_snapshot or recreated_ahead or every_captured or loses_the_slot or protected_values or keeps_counting"

echo "== integration tests with the relay under valgrind memcheck (tests/valgrind-relay.sh)"
RELAY_BIN=tests/valgrind-relay.sh run_pytest valgrind --basetemp=build/valgrind \
	tests/test_relay.py tests/test_snapshot.py -k "values_pass_through_byte_exact or sigterm or (on_demand and not while)"
# Each relay run's report is build/valgrind/TEST/valgrind.PID.log: show those that found something.
for log in build/valgrind/*[0-9]/valgrind.*.log; do # not pytest's *current links to them
	[ -f "$log" ] && ! grep -q 'ERROR SUMMARY: 0 errors' "$log" &&
		{ echo "$log:"; grep -E 'ERROR SUMMARY|definitely lost:' "$log"; }
done

[ ${#failed_suites[@]} -eq 0 ] || echo "failed: ${failed_suites[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
