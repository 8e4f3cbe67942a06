/* fuzz_route.c: libFuzzer target for relay/route.c: decode a wal2json record, route it, dead-letter what fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "route.h"
#include "w2j.h"

static relay_config *cfg;

/*
 * The configuration's defaults (config_defaults) with four sources: the default source
 * (outbox.events, "outbox.${aggregate_type}"), messages with prefix "outbox", and two sources
 * using every option (timestamps, header columns, CloudEvents, tombstones, every built-in
 * placeholder).
 */
static router *make_router(void)
{
	char err[512] = "";
	router *r;
	source_config *s;

	cfg = config_defaults(4, 0);
	s = cfg->sources;
	config_set_string(&s[0].table, "outbox.events");
	config_set_string(&s[1].message_prefix, "outbox");
	config_set_string(&s[2].table, "outbox.rich");
	config_set_string(&s[2].topic, "${schema}.${table}-${event_type}_${aggregate_type}");
	config_set_string(&s[2].timestamp, "created_at");
	config_set_list(&s[2].headers, &s[2].n_headers, "tenant,aggregate_type");
	s[2].tombstones = true;
	s[2].cloudevents = true;
	config_set_string(&s[3].message_prefix, "rich");
	config_set_string(&s[3].topic, "${prefix}.${event_type}");
	config_set_string(&s[3].timestamp, "commit");
	config_set_list(&s[3].headers, &s[3].n_headers, "tenant");
	s[3].tombstones = true;
	s[3].cloudevents = true;
	config_set_string(&s[3].ce_source, "urn:fuzz");
	r = router_new(cfg, err, sizeof(err));
	if (!r) {
		fprintf(stderr, "router_new: %s\n", err);
		abort();
	}
	return r;
}

static bool topic_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-';
}

static void check_topic(const char *topic)
{
	size_t len;

	FUZZ_CHECK(topic != NULL);
	len = strlen(topic);
	FUZZ_CHECK(len >= 1 && len <= 249 && strcmp(topic, ".") != 0 && strcmp(topic, "..") != 0);
	for (size_t i = 0; i < len; i++)
		FUZZ_CHECK(topic_char_ok(topic[i]));
}

/*
 * Well-formed UTF-8 after the Unicode standard's table 3-7, written independently of route.c:
 * what the relay publishes is always text.
 */
static bool utf8_ok(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len;
		unsigned char lo = 0x80, hi = 0xBF; /* the allowed range of the second byte */
		if (c <= 0x7F)
			len = 1;
		else if (c >= 0xC2 && c <= 0xDF)
			len = 2;
		else if (c == 0xE0)
			len = 3, lo = 0xA0;
		else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
			len = 3;
		else if (c == 0xED)
			len = 3, hi = 0x9F;
		else if (c == 0xF0)
			len = 4, lo = 0x90;
		else if (c >= 0xF1 && c <= 0xF3)
			len = 4;
		else if (c == 0xF4)
			len = 4, hi = 0x8F;
		else
			return false;
		if (n - i < len || (len > 1 && (p[i + 1] < lo || p[i + 1] > hi)))
			return false;
		for (size_t k = 2; k < len; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xBF)
				return false;
		i += len;
	}
	return true;
}

/* A published record's key, value and headers are UTF-8 text. */
static void check_text(const route_msg *m)
{
	if (m->key)
		FUZZ_CHECK(utf8_ok((const unsigned char *)m->key, m->key_len));
	if (m->value)
		FUZZ_CHECK(utf8_ok((const unsigned char *)m->value, m->value_len));
	for (size_t i = 0; i < m->n_headers; i++) {
		FUZZ_CHECK(utf8_ok((const unsigned char *)m->headers[i].name, m->headers[i].name_len));
		if (m->headers[i].value)
			FUZZ_CHECK(utf8_ok((const unsigned char *)m->headers[i].value, m->headers[i].value_len));
	}
}

/* Every byte a record points to is readable (ASan checks), and what may not be NULL is not. */
static void check_msg(const route_msg *m)
{
	if (m->key)
		fuzz_touch(m->key, m->key_len);
	else
		FUZZ_CHECK(m->key_len == 0);
	if (m->value)
		fuzz_touch(m->value, m->value_len);
	else
		FUZZ_CHECK(m->value_len == 0);
	FUZZ_CHECK(m->n_headers == 0 || m->headers != NULL);
	for (size_t i = 0; i < m->n_headers; i++) {
		FUZZ_CHECK(m->headers[i].name != NULL);
		fuzz_touch(m->headers[i].name, m->headers[i].name_len);
		if (m->headers[i].value)
			fuzz_touch(m->headers[i].value, m->headers[i].value_len);
		else
			FUZZ_CHECK(m->headers[i].value_len == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static router *r;
	const char *buf = (const char *)data;
	const char *why = NULL;
	const route_source *src;
	w2j_record rec;
	route_msg m;

	if (!r)
		r = make_router();
	if (w2j_decode(buf, size, &rec, &why) < 0)
		return 0;
	src = router_match(r, &rec);
	if (!src)
		return 0;
	FUZZ_CHECK(rec.action == W2J_INSERT || rec.action == W2J_MESSAGE);
	why = NULL;
	if (router_build(r, src, &rec, &m, &why) == 0) {
		check_topic(m.topic);
		FUZZ_CHECK(m.key != NULL);
		FUZZ_CHECK(m.timestamp_ms >= 0);
		FUZZ_CHECK(m.n_headers >= 2);
		FUZZ_CHECK(m.headers[0].name_len == 8 && memcmp(m.headers[0].name, "event_id", 8) == 0);
		FUZZ_CHECK(m.headers[1].name_len == 10 && memcmp(m.headers[1].name, "event_type", 10) == 0);
		check_msg(&m);
		check_text(&m);
		return 0;
	}
	/* As relay.c does with a row it cannot publish: the dead-letter record of it. */
	FUZZ_CHECK(why != NULL);
	const char *topic = m.topic;
	if (topic)
		check_topic(topic);
	router_dead_letter(r, src, &rec, buf, size, why, topic, &m);
	FUZZ_CHECK(m.topic && strcmp(m.topic, cfg->dead_letter_topic) == 0);
	/* The raw record (maybe cut short), headers dlq_reason .. dlq_xid, [dlq_topic], [dlq_truncated_from]. */
	FUZZ_CHECK(m.value == buf && m.value_len <= size && m.value_len > 0);
	FUZZ_CHECK(m.n_headers >= 4 && m.n_headers <= 6);
	check_msg(&m);
	return 0;
}
