/* signals.h: SIGTERM/SIGINT ask for a stop, SIGHUP for a reload; read as flags, never acted on in a handler. */
#ifndef RELAY_SIGNALS_H
#define RELAY_SIGNALS_H

#include <signal.h>
#include <stdbool.h>

/*
 * Installs the handlers and blocks the signals except while waiting in ppoll with
 * signals_wait_mask(), so a signal never slips past a check. SIGPIPE is ignored.
 */
void signals_setup(void);
/* The mask to wait with (ppoll): the relay's signals unblocked. */
const sigset_t *signals_wait_mask(void);
/* True once SIGTERM or SIGINT came. */
bool signals_stop_requested(void);
/* True once per SIGHUP (or several that came together). */
bool signals_take_reload(void);

#endif
