/* fuzz_config.c: libFuzzer target for relay/config.c: load a configuration file, then free it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "fuzz.h"
#include "kafka.h"
#include "route.h"

/* The input goes into an in-memory file (memfd), opened by config_load through /proc/self/fd. */
static int g_fd = -1;
static char g_path[64];
static FILE *g_devnull;

static void setup(void)
{
	g_fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	FUZZ_CHECK(g_fd >= 0);
	snprintf(g_path, sizeof(g_path), "/proc/self/fd/%d", g_fd);
	g_devnull = fopen("/dev/null", "w");
	FUZZ_CHECK(g_devnull != NULL);
}

/* What a loaded configuration guarantees to the rest of the relay. */
static void check_cfg(const relay_config *cfg)
{
	FUZZ_CHECK(cfg->path && strcmp(cfg->path, g_path) == 0);
	FUZZ_CHECK(cfg->pg_conninfo && cfg->slot && cfg->delivery &&
		   cfg->checkpoint_topic && cfg->log_level);
	FUZZ_CHECK(cfg->n_sources >= 1 && cfg->sources);
	for (int i = 0; i < cfg->n_sources; i++) {
		const source_config *s = &cfg->sources[i];
		FUZZ_CHECK(s->table && s->message_prefix && s->topic && s->key && s->value &&
			   s->event_id && s->event_type && s->timestamp && s->headers_column &&
			   s->ce_source);
		FUZZ_CHECK((s->table[0] != '\0') != (s->message_prefix[0] != '\0'));
		if (s->table[0]) {
			const char *dot = strchr(s->table, '.');
			FUZZ_CHECK(dot && dot != s->table && dot[1] != '\0');
		}
		FUZZ_CHECK(s->n_headers >= 0 && (s->n_headers == 0 || s->headers));
		for (int k = 0; k < s->n_headers; k++)
			FUZZ_CHECK(s->headers[k] != NULL);
	}
	FUZZ_CHECK(cfg->dead_letter_topic && cfg->on_error);
	FUZZ_CHECK(cfg->dead_letter == (strcmp(cfg->on_error, "dead-letter") == 0));
	FUZZ_CHECK(cfg->exactly_once == (strcmp(cfg->delivery, "exactly-once") == 0));
	FUZZ_CHECK(cfg->exactly_once || strcmp(cfg->delivery, "at-least-once") == 0);
	FUZZ_CHECK(cfg->status_interval_ms >= 100 && cfg->transaction_max_records >= 1 &&
		   cfg->transaction_max_ms >= 1 && cfg->shutdown_timeout_ms >= 0 &&
		   cfg->reconnect_max_backoff_ms >= 100);
	FUZZ_CHECK(config_kafka_get(cfg, "bootstrap.servers") != NULL);
	for (int i = 0; i < cfg->n_kafka; i++)
		FUZZ_CHECK(cfg->kafka[i].name && cfg->kafka[i].value && cfg->kafka[i].line >= 1 &&
			   strchr(cfg->kafka[i].name, '_') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	relay_config *cfg;

	if (g_fd < 0)
		setup();
	FUZZ_CHECK(ftruncate(g_fd, 0) == 0);
	FUZZ_CHECK(pwrite(g_fd, data, size, 0) == (ssize_t)size);
	cfg = config_load(g_path, g_devnull);
	if (!cfg)
		return 0;
	check_cfg(cfg);
	/* What check-config does next: the topic template (router) and the Kafka properties. */
	char err[512];
	router *r = router_new(cfg, err, sizeof(err));
	router_free(r);
	/* plugin.library.paths would make librdkafka dlopen() a fuzzer-chosen file. */
	if (!config_kafka_get(cfg, "plugin.library.paths")) {
		rd_kafka_conf_t *conf = kafka_conf_build(cfg, g_devnull);
		if (conf)
			rd_kafka_conf_destroy(conf);
	}
	config_free(cfg);
	return 0;
}
