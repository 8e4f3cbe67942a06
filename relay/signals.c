/* signals.c: SIGTERM/SIGINT ask for a stop, SIGHUP for a reload; read as flags, never acted on in a handler. */
#include "signals.h"

#include <string.h>

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reload_requested;
static sigset_t wait_mask; /* the signal mask ppoll waits with: our signals unblocked */

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_reload_signal(int sig)
{
	(void)sig;
	reload_requested = 1;
}

/* Signals stay blocked except while waiting in ppoll, so a SIGTERM never slips past a check. */
void signals_setup(void)
{
	struct sigaction sa;
	sigset_t block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_reload_signal;
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);
	sigdelset(&wait_mask, SIGHUP);
}

const sigset_t *signals_wait_mask(void) { return &wait_mask; }

bool signals_stop_requested(void) { return stop_requested != 0; }

/* Taken, so one SIGHUP reloads once. */
bool signals_take_reload(void)
{
	if (!reload_requested)
		return false;
	reload_requested = 0;
	return true;
}
