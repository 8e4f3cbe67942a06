/* test_notify.c: the systemd notifications as a listener on $NOTIFY_SOCKET receives them. */
#include "unit.h"

#include <errno.h>
#include <inttypes.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "notify.h"

/* The fake systemd: a datagram socket in a temporary directory, named by $NOTIFY_SOCKET. */
static int listener = -1;
static char dir[] = "/tmp/relay-notify-XXXXXX";
static char sock_path[sizeof(dir) + 16];

/* Watchdog interval of the test: 200 ms, so the rate limit (half) is 100 ms. */
#define WATCHDOG_USEC 200000

static int setup(void **state)
{
	struct sockaddr_un sa;
	char pid[32];

	(void)state;
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock_path, sizeof(sock_path), "%s/notify", dir);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
	listener = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (listener < 0 || bind(listener, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	/* Before the first notify_* call: the module reads the environment once. */
	snprintf(pid, sizeof(pid), "%ld", (long)getpid());
	setenv("NOTIFY_SOCKET", sock_path, 1);
	setenv("WATCHDOG_USEC", "200000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (listener >= 0)
		close(listener);
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

/* The next message, or "" when none is waiting (sd_notify is synchronous: sent means queued). */
static const char *next_message(void)
{
	static char buf[1024];
	ssize_t n = recv(listener, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	if (n < 0) {
		assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
		n = 0;
	}
	buf[n] = '\0';
	return buf;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

#ifdef HAVE_LIBSYSTEMD

static uint64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The loop must wake every quarter interval; pings wait for READY=1. */
static void test_watchdog_before_ready(void **state)
{
	(void)state;
	assert_int_equal(notify_watchdog_interval_ms(), WATCHDOG_USEC / 4000);
	notify_watchdog();
	assert_string_equal(next_message(), "");
}

/* READY=1 counts as a ping: the next one goes out half an interval later, once. */
static void test_ready_then_watchdog(void **state)
{
	(void)state;
	notify_ready();
	assert_string_equal(next_message(), "READY=1");
	notify_watchdog();
	assert_string_equal(next_message(), "");
	sleep_us(WATCHDOG_USEC / 2 + 10000);
	notify_watchdog();
	assert_string_equal(next_message(), "WATCHDOG=1");
	notify_watchdog();
	assert_string_equal(next_message(), "");
}

/* A status is one line, at most 255 characters, and sent only when it changed. */
static void test_status(void **state)
{
	char longer[400];

	(void)state;
	notify_status("streaming from slot \"%s\";\nconfirmed %s", "s1", "0/16B3748");
	assert_string_equal(next_message(), "STATUS=streaming from slot \"s1\"; confirmed 0/16B3748");
	notify_status("streaming from slot \"%s\"; confirmed %s", "s1", "0/16B3748");
	assert_string_equal(next_message(), ""); /* the same text again: not sent */
	memset(longer, 'x', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	notify_status("%s", longer);
	const char *got = next_message();
	assert_int_equal(strlen(got), 7 + 255);
	assert_memory_equal(got, "STATUS=xxx", 10);
}

/* RELOADING=1 carries the CLOCK_MONOTONIC time of the call (systemd 253+ checks it). */
static void test_reloading(void **state)
{
	uint64_t before, after, stamp = 0;

	(void)state;
	before = mono_us();
	notify_reloading();
	after = mono_us();
	const char *got = next_message();
	assert_int_equal(sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%" SCNu64, &stamp), 1);
	assert_true(stamp >= before && stamp <= after);
	notify_ready();
	assert_string_equal(next_message(), "READY=1");
	/* A later READY=1 does not reset systemd's watchdog timer, so it does not delay a ping. */
	sleep_us(WATCHDOG_USEC / 2 + 10000);
	notify_ready();
	assert_string_equal(next_message(), "READY=1");
	notify_watchdog();
	assert_string_equal(next_message(), "WATCHDOG=1");
}

static void test_stopping(void **state)
{
	(void)state;
	notify_stopping();
	assert_string_equal(next_message(), "STOPPING=1");
}

#else

/* Built without libsystemd: nothing is ever sent, and there is no watchdog to wake for. */
static void test_stub_sends_nothing(void **state)
{
	(void)state;
	notify_ready();
	notify_status("x %d", 1);
	notify_reloading();
	notify_stopping();
	sleep_us(WATCHDOG_USEC / 2 + 10000);
	notify_watchdog();
	assert_string_equal(next_message(), "");
	assert_int_equal(notify_watchdog_interval_ms(), 0);
}

#endif

int main(void)
{
	const struct CMUnitTest tests[] = {
#ifdef HAVE_LIBSYSTEMD
		cmocka_unit_test(test_watchdog_before_ready),
		cmocka_unit_test(test_ready_then_watchdog),
		cmocka_unit_test(test_status),
		cmocka_unit_test(test_reloading),
		cmocka_unit_test(test_stopping),
#else
		cmocka_unit_test(test_stub_sends_nothing),
#endif
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
