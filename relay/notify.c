/* notify.c: systemd notifications (sd_notify) for Type=notify and the watchdog; no-ops without libsystemd. */
#include "notify.h"

#ifdef HAVE_LIBSYSTEMD

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"

static bool probed;          /* the environment was read */
static bool have_socket;     /* $NOTIFY_SOCKET is set: someone listens */
static uint64_t watchdog_us; /* WatchdogSec for this process, 0: off */
static bool ready_sent;      /* READY=1 went out once: the watchdog pings may start */
static uint64_t last_ping_us;
static bool warned;
static char last_status[7 + 256]; /* the last STATUS= message sent */

/* Reads $NOTIFY_SOCKET and $WATCHDOG_USEC/$WATCHDOG_PID once; they do not change while we run. */
static void probe(void)
{
	uint64_t usec = 0;

	if (probed)
		return;
	probed = true;
	have_socket = getenv("NOTIFY_SOCKET") != NULL;
	if (sd_watchdog_enabled(0, &usec) > 0)
		watchdog_us = usec;
}

/* CLOCK_MONOTONIC in microseconds, the clock systemd's MONOTONIC_USEC and watchdog use. */
static uint64_t monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sends one message; the first failure is logged, later ones are not (nothing else to do). */
static void send_state(const char *state)
{
	int r;

	probe();
	if (!have_socket)
		return;
	r = sd_notify(0, state);
	if (r < 0 && !warned) {
		warned = true;
		log_warn("could not notify systemd (%.*s): %s", (int)strcspn(state, "\n="), state,
			 strerror(-r));
	}
}

/* READY=1; the first one arms the watchdog in systemd, and from then on it is fed here. */
void notify_ready(void)
{
	send_state("READY=1");
	/* Only the first READY=1 (activating -> active) starts systemd's watchdog timer; later ones
	 * (after a reconnection or a reload) do not reset it, so they must not delay the next ping. */
	if (!ready_sent)
		last_ping_us = monotonic_us();
	ready_sent = true;
}

/* STATUS=<one line>, cut at 255 characters; a repeat of the last one is not sent. */
void notify_status(const char *fmt, ...)
{
	char msg[7 + 256] = "STATUS=";
	va_list ap;

	probe();
	if (!have_socket)
		return;
	va_start(ap, fmt);
	vsnprintf(msg + 7, sizeof(msg) - 7, fmt, ap);
	va_end(ap);
	/* A newline would start a new assignment in the message: keep the status one line. */
	for (char *p = msg + 7; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (strcmp(msg, last_status) == 0)
		return;
	memcpy(last_status, msg, sizeof(msg));
	send_state(msg);
}

/* RELOADING=1 with the CLOCK_MONOTONIC time, as systemd 253 and later require. */
void notify_reloading(void)
{
	char msg[64];

	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, monotonic_us());
	send_state(msg);
}

/* STOPPING=1. */
void notify_stopping(void)
{
	send_state("STOPPING=1");
}

/* WATCHDOG=1, once READY=1 went out and at most once per half watchdog interval. */
void notify_watchdog(void)
{
	uint64_t now;

	probe();
	if (!have_socket || watchdog_us == 0 || !ready_sent)
		return;
	now = monotonic_us();
	if (now - last_ping_us < watchdog_us / 2)
		return;
	last_ping_us = now;
	send_state("WATCHDOG=1");
}

/* A quarter of the watchdog interval in ms (at least 1), or 0 without a watchdog. */
int64_t notify_watchdog_interval_ms(void)
{
	int64_t ms;

	probe();
	if (!have_socket || watchdog_us == 0)
		return 0;
	ms = (int64_t)(watchdog_us / 4000u);
	return ms > 0 ? ms : 1;
}

#else /* !HAVE_LIBSYSTEMD: built without libsystemd, nothing is ever sent */

/* No systemd support compiled in: nothing to tell. */
void notify_ready(void) {}

/* No systemd support compiled in: the status is dropped. */
void notify_status(const char *fmt, ...) { (void)fmt; }

/* No systemd support compiled in: nothing to tell. */
void notify_reloading(void) {}

/* No systemd support compiled in: nothing to tell. */
void notify_stopping(void) {}

/* No systemd support compiled in: no watchdog to feed. */
void notify_watchdog(void) {}

/* No systemd support compiled in: no watchdog, so no wake-up needed. */
int64_t notify_watchdog_interval_ms(void) { return 0; }

#endif
