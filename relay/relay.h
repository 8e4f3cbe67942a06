/* relay.h: the daemon's entry: relay_run and its exit codes. */
#ifndef RELAY_RELAY_H
#define RELAY_RELAY_H

#include "config.h"

/* Exit codes of the daemon. */
#define RELAY_EXIT_OK 0
#define RELAY_EXIT_FATAL 1  /* an error the log names; systemd restarts the relay, which fixes what
                                * passes (a producer failed for good) and repeats what does not */
#define RELAY_EXIT_USAGE 2  /* bad command line or configuration */
#define RELAY_EXIT_FENCED 3 /* a newer relay with the same transactional.id took over */

/* Runs until SIGTERM/SIGINT or a fatal error; returns the exit code. */
int relay_run(const relay_config *cfg);

#endif
