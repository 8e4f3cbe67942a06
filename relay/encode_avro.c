/* encode_avro.c: the Avro format: an outbox event's JSON value converted by its event type's schema, Confluent wire format. */
#include "encode_avro.h"

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avjson.h"
#include "encode.h"
#include "log.h"
#include "registry.h"
#include "xalloc.h"

#define AVRO_SUFFIX ".avsc"
#define WIRE_HEADER 5 /* magic byte 0, then the schema id, 4 bytes big-endian */

/* A schema id of a contract under one subject (the registry client caches by text too). */
typedef struct {
	char *subject;
	int id;
} avro_subject_id;

/*
 * One event type's contract: its schema file, compiled, and its ids by subject (compared by the
 * short subject only, so a cached event costs no comparison of schema texts).
 */
typedef struct {
	char *event_type;
	avjson_codec *codec;
	avro_subject_id *ids;
	size_t n_ids;
} avro_contract;

/* The format's state: made by encode_avro_setup, used by every Avro record. */
typedef struct {
	avro_contract *contracts;
	size_t n;
	registry *reg;
	char *url;            /* the registry's base, for ce_dataschema */
	char why[512];
	char subject[300];
	route_header *headers; /* the record's headers and ours (the router's stay as they were) */
	size_t headers_cap;
	char id_text[16];
	int id_text_of;        /* the id id_text holds (0: none yet) */
	char dataschema[600];
} avro_state;

/* The whole content of a file (NUL-terminated); NULL when it cannot be read. */
static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0) {
		long n = ftell(f);
		if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
			buf = xmalloc((size_t)n + 1);
			*len = fread(buf, 1, (size_t)n, f);
			buf[*len] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Compiles one schema file as the contract of event_type; -1 with err naming the file. */
static int load_contract(avro_state *av, const char *dir, const char *file, char *err, size_t errlen)
{
	char path[4096], msg[400];
	size_t len = 0, nlen = strlen(file) - strlen(AVRO_SUFFIX);
	char *text;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if (!(text = read_file(path, &len))) {
		snprintf(err, errlen, "schema_registry.schema_dir: cannot read %s", path);
		return -1;
	}
	avjson_codec *c = avjson_new(text, len, msg, sizeof(msg));
	free(text);
	if (!c) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return -1;
	}
	av->contracts = xrealloc(av->contracts, sizeof(*av->contracts) * (av->n + 1));
	memset(&av->contracts[av->n], 0, sizeof(av->contracts[av->n]));
	av->contracts[av->n].event_type = xstrndup(file, nlen);
	av->contracts[av->n++].codec = c;
	return 0;
}

/* True when a directory entry's name is <something>.avsc. */
static int is_schema_file(const struct dirent *e)
{
	size_t n = strlen(e->d_name), s = strlen(AVRO_SUFFIX);
	return n > s && strcmp(e->d_name + n - s, AVRO_SUFFIX) == 0;
}

void *encode_avro_setup(const relay_config *cfg, char *err, size_t errlen)
{
	avro_state *av = xcalloc(1, sizeof(*av));
	struct dirent **names;
	int n = scandir(cfg->schema_dir, &names, is_schema_file, alphasort), rc = 0;

	if (n < 0) {
		snprintf(err, errlen, "schema_registry.schema_dir: cannot read the directory %s",
			 cfg->schema_dir);
		free(av);
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		if (rc == 0)
			rc = load_contract(av, cfg->schema_dir, names[i]->d_name, err, errlen);
		free(names[i]);
	}
	free(names);
	av->url = xstrdup(cfg->registry_url);
	av->reg = registry_new(cfg->registry_url, cfg->registry_user, cfg->registry_password,
			       cfg->registry_ca_file, cfg->registry_timeout_ms,
			       cfg->registry_auto_register);
	if (rc == 0)
		return av;
	encode_avro_teardown(av);
	return NULL;
}

void encode_avro_teardown(void *state)
{
	avro_state *av = state;

	for (size_t i = 0; i < av->n; i++) {
		avro_contract *c = &av->contracts[i];
		for (size_t k = 0; k < c->n_ids; k++)
			free(c->ids[k].subject);
		free(c->ids);
		free(c->event_type);
		avjson_free(c->codec);
	}
	free(av->contracts);
	free(av->url);
	free(av->headers);
	registry_free(av->reg);
	free(av);
}

/* The contract of the record's event_type header; NULL (and *why) when there is none. */
static avro_contract *contract_of(avro_state *av, const route_msg *m, const char **why)
{
	for (size_t h = 0; h < m->n_headers; h++) {
		const route_header *hd = &m->headers[h];
		if (hd->name_len != 10 || memcmp(hd->name, "event_type", 10) != 0)
			continue;
		for (size_t i = 0; hd->value && i < av->n; i++)
			if (strlen(av->contracts[i].event_type) == hd->value_len &&
			    memcmp(av->contracts[i].event_type, hd->value, hd->value_len) == 0)
				return &av->contracts[i];
		int n = (int)(hd->value_len > 100 ? 100 : hd->value_len);
		const char *t = hd->value ? hd->value : "";
		snprintf(av->why, sizeof(av->why), "no Avro schema for event type \"%.*s\" (no %.*s"
			 AVRO_SUFFIX " in schema_registry.schema_dir)", n, t, n, t);
		return *why = av->why, NULL;
	}
	return *why = "an Avro source's event needs an event_type (the schema's name)", NULL;
}

/*
 * The schema id for the record's subject: from the contract's ids, else from the registry (then
 * kept). ENCODE_OK, or ENCODE_HOLD / ENCODE_STOP with *why.
 */
static int schema_id(avro_state *av, const route_msg *m, avro_contract *c, int *id, const char **why)
{
	/* TopicNameStrategy: <topic>-value (a Kafka topic has at most 249 characters: it fits). No
	 * printf: this runs for every event, and snprintf cost a tenth of the Avro conversion. */
	size_t tl = strlen(m->topic), cut = sizeof(av->subject) - sizeof("-value");
	memcpy(av->subject, m->topic, tl < cut ? tl : cut);
	memcpy(av->subject + (tl < cut ? tl : cut), "-value", sizeof("-value"));
	for (size_t k = 0; k < c->n_ids; k++)
		if (strcmp(c->ids[k].subject, av->subject) == 0)
			return *id = c->ids[k].id, ENCODE_OK;
	registry_result r = registry_id(av->reg, av->subject, avjson_schema_text(c->codec), id, av->why,
					sizeof(av->why));
	if (r != REGISTRY_OK) {
		*why = av->why;
		return r == REGISTRY_DOWN ? ENCODE_HOLD : ENCODE_STOP;
	}
	c->ids = xrealloc(c->ids, sizeof(*c->ids) * (c->n_ids + 1));
	c->ids[c->n_ids].subject = xstrdup(av->subject);
	c->ids[c->n_ids++].id = *id;
	log_info("Avro: schema %s.avsc is id %d under subject %s", c->event_type, *id, av->subject);
	return ENCODE_OK;
}

/* True when a header has this name. */
static bool header_is(const route_header *h, const char *name)
{
	return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0;
}

/* One more header in av->headers (room was made by with_schema_headers). */
static void add_header(avro_state *av, route_msg *m, const char *name, const char *value)
{
	route_header *h = &av->headers[m->n_headers++];
	h->name = name, h->name_len = strlen(name);
	h->value = value, h->value_len = strlen(value);
}

/*
 * The record's headers plus which schema it has: schema_id and schema_subject; with CloudEvents
 * on, ce_dataschema (the registry's URL of the schema) and content-type application/avro. The
 * headers are copied into this module's array (the router's own stay as they were).
 */
static void with_schema_headers(avro_state *av, route_msg *m, int id)
{
	bool cloudevents = false;

	if (av->headers_cap < m->n_headers + 3) {
		av->headers_cap = m->n_headers + 8;
		av->headers = xrealloc(av->headers, sizeof(*av->headers) * av->headers_cap);
	}
	if (m->n_headers)
		memcpy(av->headers, m->headers, sizeof(*av->headers) * m->n_headers);
	m->headers = av->headers;
	for (size_t i = 0; i < m->n_headers; i++) {
		cloudevents |= header_is(&av->headers[i], "ce_specversion");
		if (header_is(&av->headers[i], "content-type"))
			av->headers[i].value = "application/avro", av->headers[i].value_len = 16;
	}
	if (av->id_text_of != id || !av->id_text[0]) /* the same id event after event: written once */
		snprintf(av->id_text, sizeof(av->id_text), "%d", id), av->id_text_of = id;
	add_header(av, m, "schema_id", av->id_text);
	add_header(av, m, "schema_subject", av->subject);
	if (cloudevents) {
		snprintf(av->dataschema, sizeof(av->dataschema), "%s/schemas/ids/%d", av->url, id);
		add_header(av, m, "ce_dataschema", av->dataschema);
	}
}

int encode_avro(void *state, record *rec, const char **why)
{
	avro_state *av = state;
	route_msg *m = rec->msg;
	avro_contract *c;
	char *out;
	size_t len;
	int id, rc;

	if (!m->value) /* a tombstone has no payload to convert */
		return ENCODE_OK;
	if (!(c = contract_of(av, m, why)))
		return ENCODE_REJECT;
	if (avjson_encode(c->codec, m->value, m->value_len, WIRE_HEADER, &out, &len, av->why,
			  sizeof(av->why)) < 0)
		return *why = av->why, ENCODE_REJECT;
	if ((rc = schema_id(av, m, c, &id, why)) != ENCODE_OK)
		return rc;
	out[0] = 0;
	out[1] = (char)((unsigned)id >> 24);
	out[2] = (char)((unsigned)id >> 16);
	out[3] = (char)((unsigned)id >> 8);
	out[4] = (char)id;
	m->value = out; /* the codec's buffer, until its next call; librdkafka copies it */
	m->value_len = len;
	with_schema_headers(av, m, id);
	return ENCODE_OK;
}
