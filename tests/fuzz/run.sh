#!/usr/bin/env bash
# run.sh: runs libFuzzer targets for SECONDS each on a work copy of their seed corpus; one result line per target.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]    (targets: w2j route json config checkpoint capture timeline avro avro_change pgtext protect; default all)
#
# Seeds (tests/fuzz/corpus/TARGET) are copied into build/fuzz/work/TARGET/corpus, where the inputs
# the fuzzer finds accumulate across runs; crashing inputs go to build/fuzz/work/TARGET/crash-*.
# Targets run FUZZ_JOBS at a time (default: the number of CPUs). Prints "fuzz_TARGET: passed ..."
# or "fuzz_TARGET: FAILED ..." per target; exits 0 only when every fuzzer exited 0.
set -u
cd "$(dirname "$0")/../.."

[ $# -ge 1 ] || { echo "usage: $0 SECONDS [TARGET...]" >&2; exit 2; }
secs=$1
shift
if [ $# -eq 0 ]; then
	set -- $(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_\(.*\)\.c|\1|')
fi
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}

# Runs one target; its verdict goes to WORK/result.
run_one() {
	local t=$1 bin=build/fuzz/fuzz_$1 work=build/fuzz/work/$1 dict= asan= rc
	mkdir -p "$work/corpus"
	rm -f "$work/result"
	if [ ! -x "$bin" ]; then
		echo "fuzz_$t: FAILED ($bin is not built: make build/fuzz/fuzz_$t)" >"$work/result"
		return
	fi
	cp -n tests/fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null
	case $t in
	config)
		dict=tests/fuzz/config.dict
		# Most inputs leak inside libconfig (lsan.supp), and libFuzzer then scans the heap
		# for leaks; a small quarantine keeps that scan short (3x the executions).
		asan=quarantine_size_mb=4
		;;
	timeline) dict=tests/fuzz/timeline.dict ;;
	protect) dict=tests/fuzz/protect.dict ;;
	*) dict=tests/fuzz/json.dict ;;
	esac
	# stdin from /dev/null: a libconfig @include of /dev/stdin must not wait for a terminal.
	ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+${asan:+:}}$asan \
	LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
		"$bin" -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
		-dict="$dict" -artifact_prefix="$work/" "$work/corpus" </dev/null >"$work/fuzz.log" 2>&1
	rc=$?
	local runs execs
	runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$work/fuzz.log" | tail -n1)
	execs=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$work/fuzz.log" | tail -n1)
	if [ "$rc" -eq 0 ]; then
		echo "fuzz_$t: passed (${runs:-?} runs in $secs s, ${execs:-?} exec/s, corpus $(ls "$work/corpus" | wc -l))" >"$work/result"
	else
		{
			echo "fuzz_$t: FAILED (exit $rc after ${runs:-?} runs; log $work/fuzz.log)"
			grep -E '^(==[0-9]+==ERROR|SUMMARY|artifact_prefix|Test unit written|.*check failed)' "$work/fuzz.log" | sed 's/^/    /'
			grep -A25 -m1 -E '^==[0-9]+==ERROR|runtime error|check failed' "$work/fuzz.log" | sed 's/^/    /'
		} >"$work/result"
	fi
}

running=0
for t; do
	run_one "$t" &
	running=$((running + 1))
	if [ "$running" -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

status=0
for t; do
	if [ -f "build/fuzz/work/$t/result" ]; then
		cat "build/fuzz/work/$t/result"
	else
		echo "fuzz_$t: FAILED (no result)"
	fi
	grep -q "^fuzz_$t: passed" "build/fuzz/work/$t/result" 2>/dev/null || status=1
done
exit $status
