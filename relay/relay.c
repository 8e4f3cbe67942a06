/* relay.c: relay_run: builds the relay's parts, runs its sessions, frees them (again after a standby). */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "backfill_run.h"
#include "capture.h"
#include "checkpoint.h"
#include "eos.h"
#include "inflight.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "pending.h"
#include "pg_stream.h"
#include "pipeline.h"
#include "progress.h"
#include "route.h"
#include "relay_state.h"
#include "session.h"
#include "signals.h"
#include "snapshot.h"

/*
 * Builds the parts of one run; the router and the pipeline (schema files) are the only ones that
 * can fail (the error logged).
 * 0, or -1 with what was built left for free_parts.
 */
static int build_parts(relay *r, const relay_config *cfg)
{
	char err[512];

	memset(r, 0, sizeof(*r));
	r->cfg = cfg;
	r->eos_on = cfg->exactly_once;
	r->cur_row = NO_ROW;
	progress_init(&r->prog, LSN_INVALID);
	if (r->eos_on) {
		r->bf = backfill_new(cfg);
		r->gate = standby_gate_new();
		backfill_run_attach(r);
	}
	if (cfg->n_captures > 0) {
		r->cap = capture_new(cfg);
		if (r->eos_on)
			r->snap = snapshot_new(cfg, r->cap);
	}
	r->router = router_new(cfg, err, sizeof(err));
	if (r->router)
		r->pipe = pipeline_new(cfg, err, sizeof(err));
	if (r->pipe && r->snap)
		snapshot_protect(r->snap, pipeline_transform(r->pipe));
	if (!r->pipe) {
		/* The transform stage's errors name file and line themselves ("FILE:LINE: ..."). */
		if (strncmp(err, cfg->path, strlen(cfg->path)) == 0)
			log_error("%s", err);
		else
			log_error("%s: %s", cfg->path, err);
		return -1;
	}
	return 0;
}

/* Starts the pipeline of a run (the start-time schema check): 0, or -1 with the error logged. */
static int start_pipeline(relay *r, const relay_config *cfg)
{
	char err[512];

	if (pipeline_start(r->pipe, cfg, err, sizeof(err)) != 0) { /* a schema the registry refuses */
		log_error("%s", err);
		return -1;
	}
	return 0;
}

/* Frees the parts of one run; the producer first: its last delivery reports still use r->flight. */
static void free_parts(relay *r)
{
	kafka_producer_free(r->kp);
	r->kp = NULL;
	if (r->eos_on)
		eos_free(&r->eos);
	router_free(r->router);
	pipeline_free(r->pipe);
	snapshot_free(r->snap);
	capture_free(r->cap);
	backfill_free(r->bf);
	standby_gate_free(r->gate);
	checkpoint_recovery_free(&r->lo);
	progress_free(&r->prog);
	txctx_free(&r->tx);
	inflight_free(&r->flight);
	pending_free(&r->pend);
}

/*
 * The parts are built (and the pipeline started) once per run; sessions come and go around them. A relay that loses the
 * slot to another (relay.takeover = "wait") starts a new run with fresh parts, as a restarted
 * process would, and stands by again: nothing of what it read or planned outlives the run.
 */
int relay_run(const relay_config *cfg)
{
	relay r;
	char err[512];
	int code = RELAY_EXIT_USAGE;

	signals_setup();
	if (build_parts(&r, cfg) < 0)
		goto cleanup;
	metrics_set_delivery(cfg->exactly_once);
	/* After signals_setup: the server's thread keeps our signals blocked, as librdkafka's do. */
	if (metrics_start(cfg->metrics_listen, err, sizeof(err)) < 0) {
		log_error("%s: relay.metrics_listen: %s", cfg->path, err);
		goto cleanup;
	}
	if (start_pipeline(&r, cfg) < 0)
		goto cleanup;
	while ((code = session_run_all(&r)) == SESSION_RUN_STAND_BY || code == SESSION_RUN_START_OVER) {
		free_parts(&r);
		if (build_parts(&r, cfg) < 0 || start_pipeline(&r, cfg) < 0) {
			code = RELAY_EXIT_USAGE;
			break;
		}
	}
cleanup:
	metrics_set_ready(false);
	metrics_stop();
	free_parts(&r);
	return code;
}
