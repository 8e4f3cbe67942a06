#!/bin/sh
# valgrind-relay.sh: runs relay/outbox-relay under valgrind memcheck (a RELAY_BIN for the tests); exit 99 on an error or definite leak.
#
# Arguments are the relay's. The report goes to valgrind.PID.log next to the relay's log: in the
# directory of the --config file when relay.log is there (the tests' layout, see relayctl.py),
# else in VALGRIND_LOG_DIR or build/valgrind. Exit code: the relay's, or 99 when valgrind found
# an error or a definite leak.
repo=$(cd "$(dirname "$0")/.." && pwd)

dir=${VALGRIND_LOG_DIR:-}
if [ -z "$dir" ]; then
	prev=
	for a in "$@"; do
		case $prev in
		-c | --config) [ -f "$(dirname "$a")/relay.log" ] && dir=$(dirname "$a") ;;
		esac
		case $a in
		--config=*) [ -f "$(dirname "${a#--config=}")/relay.log" ] && dir=$(dirname "${a#--config=}") ;;
		esac
		prev=$a
	done
fi
dir=${dir:-$repo/build/valgrind}
mkdir -p "$dir"

# --trace-children=no: the relay starts no programs of ours (a librdkafka SASL kinit command
# would be one). --num-callers: librdkafka's and libpq's stacks are deep.
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
	--error-exitcode=99 --trace-children=no --num-callers=40 \
	--suppressions="$repo/tests/valgrind.supp" --log-file="$dir/valgrind.%p.log" \
	"$repo/relay/outbox-relay" "$@"
