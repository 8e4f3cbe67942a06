/* micro.c: CPU per row of the relay's own path (decode, route, produce) without servers. */
/*
 * Usage: build/rel/micro [ROWS] [records.jsonl]
 * Generates wal2json records shaped like the benchmark's outbox rows (about 300 bytes of JSON
 * payload, a headers object, transactions of 10 rows, B and C records) or, with a file, cycles
 * through its records; then times, in CPU µs per row of this process (all threads):
 *   decode           w2j_decode of every record
 *   decode+route     plus router_match and router_build of each outbox insert
 *   decode+route+produce   plus kafka_produce to a producer whose broker is unreachable; every
 *                    QUEUE records are purged and their delivery reports served, so librdkafka's
 *                    allocation, copy, headers and report path are counted, its network is not.
 *   decode+route+avro  decode+route, then the value converted to Avro by the payload's schema
 *                    (avjson_encode: what format = "avro" adds per row once its schema id is
 *                    cached); generated records only
 *   decode+route+protect  decode+route, then the transform stage with make bench's protect rules
 *                    (tests/bench/run.py PROTECT_RULES, docs/privacy.md) on each payload:
 *                    /user_id and /reviewer hashed, /document masked keeping 2; with
 *                    MICRO_PROTECT=encrypt instead /user_id hashed, /document masked, /score
 *                    encrypted; generated records only
 * MICRO_TXCTX=1 adds the transaction context headers (pg_xid, pg_commit_lsn, pg_txn_index) to
 * each produced record, counted per topic as publish.c does: their cost is the difference.
 * MICRO_STAGE=0, 1, 2, 3 or 4 runs one stage alone. Run it under perf record or valgrind
 * --tool=callgrind to see where the time goes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "avjson.h"
#include "config.h"
#include "kafka.h"
#include "route.h"
#include "transform.h"
#include "txctx.h"
#include "w2j.h"

#define QUEUE 20000

typedef struct {
	char **recs;
	size_t *lens;
	size_t n, cap;
} record_set;

static void add_record(record_set *s, const char *text, size_t len)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 1024;
		s->recs = realloc(s->recs, s->cap * sizeof(*s->recs));
		s->lens = realloc(s->lens, s->cap * sizeof(*s->lens));
	}
	s->recs[s->n] = malloc(len + 1);
	memcpy(s->recs[s->n], text, len);
	s->recs[s->n][len] = '\0';
	s->lens[s->n++] = len;
}

/* One transaction of 10 outbox inserts like the benchmark's bench_rows(); the payload's keys in
 * jsonb's order (shorter keys first), as wal2json hands a jsonb column over. */
static void gen_txn(record_set *s, unsigned long txn)
{
	static const char *aggs[] = {"user", "document", "liveness"};
	char buf[4096];
	int n;

	n = snprintf(buf, sizeof(buf), "{\"action\":\"B\",\"xid\":%lu,\"timestamp\":\"2026-11-22 "
		     "11:05:42.487059+00\",\"lsn\":\"0/%lX\",\"nextlsn\":\"0/%lX\"}", 1000 + txn,
		     txn * 4096 + 4000, txn * 4096 + 4040);
	add_record(s, buf, (size_t)n);
	for (unsigned long i = 0; i < 10; i++) {
		unsigned long g = txn * 10 + i;
		const char *agg = aggs[g % 3];
		n = snprintf(buf, sizeof(buf),
			"{\"action\":\"I\",\"xid\":%lu,\"timestamp\":\"2026-11-22 11:05:42.487059+00\","
			"\"lsn\":\"0/%lX\",\"schema\":\"outbox\",\"table\":\"events\",\"columns\":["
			"{\"name\":\"id\",\"type\":\"uuid\",\"value\":\"fc723d7a-f4e9-4359-b0ad-%012lx\"},"
			"{\"name\":\"aggregate_type\",\"type\":\"text\",\"value\":\"%s\"},"
			"{\"name\":\"aggregate_id\",\"type\":\"text\",\"value\":\"%s-%lu\"},"
			"{\"name\":\"event_type\",\"type\":\"text\",\"value\":\"Changed\"},"
			"{\"name\":\"payload\",\"type\":\"jsonb\",\"value\":\"{\\\"pad\\\": \\\"%.*s\\\", "
			"\\\"seq\\\": %lu, \\\"score\\\": 0.97, \\\"status\\\": \\\"verified\\\", "
			"\\\"user_id\\\": \\\"u-%lu\\\", \\\"document\\\": \\\"passport\\\", "
			"\\\"reviewer\\\": \\\"auto\\\"}\"},"
			"{\"name\":\"headers\",\"type\":\"jsonb\",\"value\":\"{\\\"tenant\\\": \\\"t1\\\"}\"},"
			"{\"name\":\"created_at\",\"type\":\"timestamp with time zone\",\"value\":"
			"\"2026-11-22 11:05:42.488848+00\"}]}",
			1000 + txn, txn * 4096 + i * 300, g, agg, agg, g % 10000, 190,
			"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
			"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", g, g % 5000);
		add_record(s, buf, (size_t)n);
	}
	n = snprintf(buf, sizeof(buf), "{\"action\":\"C\",\"xid\":%lu,\"timestamp\":\"2026-11-22 "
		     "11:05:42.487059+00\",\"lsn\":\"0/%lX\",\"nextlsn\":\"0/%lX\"}", 1000 + txn,
		     txn * 4096 + 4000, txn * 4096 + 4040);
	add_record(s, buf, (size_t)n);
}

static void load_file(record_set *s, const char *path)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f) {
		perror(path);
		exit(1);
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		while (n > 0 && line[n - 1] == '\n')
			n--;
		if (n > 0)
			add_record(s, line, (size_t)n);
	}
	free(line);
	fclose(f);
}

static double cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Page faults so far (malloc giving memory back and taking it again shows up here). */
static long minor_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt;
}

static void on_report(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err)
{
	(void)msg_opaque;
	(void)err;
	(*(uint64_t *)opaque)++;
}

typedef enum { STAGE_DECODE, STAGE_ROUTE, STAGE_PRODUCE, STAGE_AVRO, STAGE_PROTECT } stage;

/* The generated payloads' schema (gen_txn), for the Avro stage. */
static const char AVRO_SCHEMA[] =
	"{\"type\":\"record\",\"name\":\"Changed\",\"fields\":[{\"name\":\"seq\",\"type\":\"long\"},"
	"{\"name\":\"user_id\",\"type\":\"string\"},{\"name\":\"document\",\"type\":\"string\"},"
	"{\"name\":\"pad\",\"type\":\"string\"},{\"name\":\"status\",\"type\":\"string\"},"
	"{\"name\":\"score\",\"type\":\"double\"},{\"name\":\"reviewer\",\"type\":\"string\"}]}";
static avjson_codec *avro_codec;
static transform *protect_stage;
static bool with_context; /* MICRO_TXCTX=1 */
static txctx context;

/* produce: as publish.c hands a record over, with the transaction context when asked. */
static rd_kafka_resp_err_t produce(kafka_producer *kp, const route_msg *m)
{
	txctx_headers th;
	route_header h[3];

	if (!with_context)
		return kafka_produce(kp, m, RD_KAFKA_PARTITION_UA, NULL, 0, NULL);
	txctx_peek(&context, &th);
	h[0] = (route_header){TXCTX_H_XID, sizeof(TXCTX_H_XID) - 1, th.xid, strlen(th.xid)};
	h[1] = (route_header){TXCTX_H_LSN, sizeof(TXCTX_H_LSN) - 1, th.lsn, strlen(th.lsn)};
	h[2] = (route_header){TXCTX_H_INDEX, sizeof(TXCTX_H_INDEX) - 1, th.index, strlen(th.index)};
	rd_kafka_resp_err_t err = kafka_produce(kp, m, RD_KAFKA_PARTITION_UA, h, 3, NULL);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		txctx_count(&context, m->topic);
	return err;
}

/* Runs rows outbox rows (cycling through the set) up to the given stage; returns CPU µs. */
static double run(const record_set *s, router *rt, kafka_producer *kp, size_t rows, stage st,
		  size_t *rows_done)
{
	size_t done = 0, queued = 0;
	double t0 = cpu_us();

	for (size_t i = 0; done < rows; i = (i + 1) % s->n) {
		w2j_record rec;
		const char *why = NULL;
		route_msg m;
		if (w2j_decode(s->recs[i], s->lens[i], &rec, &why) < 0) {
			fprintf(stderr, "record %zu: %s\n", i, why);
			exit(1);
		}
		if (rec.action != W2J_INSERT && rec.action != W2J_MESSAGE)
			continue;
		done++;
		if (st == STAGE_DECODE)
			continue;
		const route_source *src = router_match(rt, &rec);
		if (!src || router_build(rt, src, &rec, &m, &why) < 0) {
			fprintf(stderr, "record %zu not routed: %s\n", i, why ? why : "no source");
			exit(1);
		}
		if (st == STAGE_ROUTE)
			continue;
		if (st == STAGE_PROTECT) {
			record r = {.kind = RECORD_OUTBOX, .source = "outbox.events", .msg = &m};
			if (transform_apply(protect_stage, &r, &why) < 0) {
				fprintf(stderr, "record %zu not protected: %s\n", i, why);
				exit(1);
			}
			continue;
		}
		if (st == STAGE_AVRO) {
			char reason[256], *out;
			size_t len;
			if (avjson_encode(avro_codec, m.value, m.value_len, 5, &out, &len, reason,
					  sizeof(reason)) < 0) {
				fprintf(stderr, "record %zu not converted: %s\n", i, reason);
				exit(1);
			}
			continue;
		}
		if (rec.action == W2J_INSERT && done % 10 == 1)
			txctx_begin(&context, rec.xid, 0x16B3748 + done, 0); /* transactions of 10 rows */
		if (produce(kp, &m) != RD_KAFKA_RESP_ERR_NO_ERROR) {
			fprintf(stderr, "produce failed\n");
			exit(1);
		}
		if (++queued == QUEUE) {
			kafka_purge(kp);
			kafka_serve(kp);
			queued = 0;
		}
	}
	if (kp) {
		kafka_purge(kp);
		kafka_serve(kp);
	}
	*rows_done = done;
	return cpu_us() - t0;
}

/* The protect stage's rules and keys (a throwaway credentials directory, as systemd makes one):
 * make bench's rules, or with MICRO_PROTECT=encrypt a hash, a mask and an encryption. */
static transform *protect_setup(relay_config *cfg, char *err, size_t errlen)
{
	static const struct {
		const char *field, *action;
		int keep_last;
	} bench[] = {{"/user_id", "hash", 4}, {"/reviewer", "hash", 4}, {"/document", "mask", 2}},
	  encrypt[] = {{"/user_id", "hash", 4}, {"/document", "mask", 4}, {"/score", "encrypt", 4}};
	static const char key[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
	const char *variant = getenv("MICRO_PROTECT");
	bool enc = variant && strcmp(variant, "encrypt") == 0;
	char dir[] = "/tmp/micro-keys-XXXXXX", path[64];
	transform *t;

	if (!mkdtemp(dir))
		return NULL;
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, i ? "protect-encrypt-key" : "protect-hash-key");
		FILE *f = fopen(path, "w");
		if (!f)
			return NULL;
		fputs(key, f);
		fclose(f);
	}
	for (int i = 0; i < 3; i++) {
		protect_config *p = config_add_protect(cfg);
		config_set_list(&p->fields, &p->n_fields, enc ? encrypt[i].field : bench[i].field);
		config_set_string(&p->action, enc ? encrypt[i].action : bench[i].action);
		p->keep_last = enc ? encrypt[i].keep_last : bench[i].keep_last;
	}
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	t = transform_new(cfg, err, errlen);
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, i ? "protect-encrypt-key" : "protect-hash-key");
		unlink(path);
	}
	rmdir(dir);
	return t;
}

int main(int argc, char **argv)
{
	size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
	with_context = getenv("MICRO_TXCTX") && strcmp(getenv("MICRO_TXCTX"), "1") == 0;
	record_set set = {0};
	char path[] = "/tmp/micro-relay-XXXXXX";
	char err[512];
	uint64_t reports = 0;
	int fd = mkstemp(path);
	static const char *conf_text =
		"postgresql = { conninfo = \"dbname=x\"; };\n"
		"sources = ( { table = \"outbox.events\"; topic = \"bench.${aggregate_type}\"; } );\n"
		"relay = { delivery = \"at-least-once\"; };\n"
		"kafka = { bootstrap_servers = \"127.0.0.1:9\"; queue_buffering_max_messages = 1000000;"
		" reconnect_backoff_ms = 10000; reconnect_backoff_max_ms = 10000; };\n";

	if (fd < 0 || write(fd, conf_text, strlen(conf_text)) != (ssize_t)strlen(conf_text))
		return 1;
	close(fd);
	relay_config *cfg = config_load(path, stderr);
	unlink(path);
	if (!cfg)
		return 1;
	if (argc > 2)
		load_file(&set, argv[2]);
	else
		for (unsigned long t = 0; t < 1000; t++)
			gen_txn(&set, t);
	router *rt = router_new(cfg, err, sizeof(err));
	kafka_producer *kp = kafka_producer_new(cfg, NULL, on_report, &reports, err, sizeof(err));
	if (!rt || !kp) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	static const char *names[] = {"decode", "decode+route", "decode+route+produce",
				      "decode+route+avro", "decode+route+protect"};
	const char *only = getenv("MICRO_STAGE"); /* 0, 1, 2 or 3: that stage alone */
	avro_codec = avjson_new(AVRO_SCHEMA, sizeof(AVRO_SCHEMA) - 1, err, sizeof(err));
	if (!avro_codec) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (!(protect_stage = protect_setup(cfg, err, sizeof(err)))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	for (int st = STAGE_DECODE; st <= STAGE_PROTECT; st++) {
		if ((only && atoi(only) != st) || (st >= STAGE_AVRO && argc > 2))
			continue;
		size_t done;
		long faults = minor_faults();
		double us = run(&set, rt, st == STAGE_PRODUCE ? kp : NULL, rows, (stage)st, &done);
		faults = minor_faults() - faults;
		printf("%-22s %8.3f us/row  (%zu rows, %.2f s CPU, %.3f page faults/row)\n", names[st],
		       us / (double)done, done, us / 1e6, (double)faults / (double)done);
	}
	avjson_free(avro_codec);
	transform_free(protect_stage);
	kafka_producer_free(kp);
	router_free(rt);
	config_free(cfg);
	for (size_t i = 0; i < set.n; i++)
		free(set.recs[i]);
	free(set.recs);
	free(set.lens);
	return 0;
}
