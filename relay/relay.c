/* relay.c: relay_run: builds the relay's parts, runs its sessions, frees them. */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "backfill_run.h"
#include "capture.h"
#include "checkpoint.h"
#include "encode.h"
#include "eos.h"
#include "inflight.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pending.h"
#include "pg_stream.h"
#include "progress.h"
#include "route.h"
#include "relay_state.h"
#include "session.h"
#include "signals.h"
#include "snapshot.h"

/* The parts are built once per process; sessions come and go around them. */
int relay_run(const relay_config *cfg)
{
	relay r;
	char err[512];
	int code = RELAY_EXIT_FATAL;

	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.eos_on = cfg->exactly_once;
	r.cur_row = NO_ROW;
	signals_setup();
	progress_init(&r.prog, LSN_INVALID);
	if (r.eos_on) {
		r.bf = backfill_new(cfg);
		r.gate = standby_gate_new();
		backfill_run_attach(&r);
	}
	if (cfg->n_captures > 0) {
		r.cap = capture_new(cfg);
		if (r.eos_on)
			r.snap = snapshot_new(cfg, r.cap);
	}
	r.router = router_new(cfg, err, sizeof(err));
	if (!r.router) {
		log_error("%s: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	if (encode_setup(cfg, err, sizeof(err)) < 0) {
		log_error("%s: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	/* After signals_setup: the server's thread keeps our signals blocked, as librdkafka's do. */
	if (metrics_start(cfg->metrics_listen, err, sizeof(err)) < 0) {
		log_error("%s: relay.metrics_listen: %s", cfg->path, err);
		code = RELAY_EXIT_USAGE;
		goto cleanup;
	}
	code = session_run_all(&r);
cleanup:
	metrics_set_ready(false);
	metrics_stop();
	kafka_producer_free(r.kp); /* its last delivery reports still use r.flight */
	if (r.eos_on)
		eos_free(&r.eos);
	router_free(r.router);
	encode_teardown();
	snapshot_free(r.snap);
	capture_free(r.cap);
	backfill_free(r.bf);
	standby_gate_free(r.gate);
	checkpoint_recovery_free(&r.lo);
	progress_free(&r.prog);
	inflight_free(&r.flight);
	pending_free(&r.pend);
	return code;
}
