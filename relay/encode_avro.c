/* encode_avro.c: the Avro format: an outbox event's JSON value converted by its event type's schema, Confluent wire format. */
#include "encode_avro.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avjson.h"
#include "avro_change.h"
#include "compat.h"
#include "contract.h"
#include "encode.h"
#include "headers.h"
#include "log.h"
#include "registry.h"
#include "xalloc.h"


/* The subject and schema id of a contract's events on one topic (the registry client caches
 * by text too). */
typedef struct {
	char *topic;
	char *subject; /* what the schema_subject header says; stays until teardown */
	int id;
} avro_subject_id;

/*
 * The ids of one contract (a schema file) by topic, compared by the topic only, so a cached
 * event costs no subject named again (snprintf) and no comparison of schema texts: events of
 * several topics interleave (one per aggregate type), a cache of the last one missed mostly.
 */
typedef struct {
	avro_subject_id *ids;
	size_t n_ids;
} avro_ids;

/* The format's state: made by encode_avro_setup, used by every Avro record. */
typedef struct {
	contract_set *contracts; /* NULL while those of the registry are not fetched yet */
	const char *prefix;      /* schema_registry.contract_prefix of Avro sources ("": files) */
	avro_ids *ids; /* one per contract, same index */
	registry *reg;
	registry_strategy strategy; /* how subjects are named */
	const relay_config *cfg; /* for the compatibility check (compat.h) */
	bool check_pending;   /* the registry was down at start: check before its first use */
	avro_change *changes; /* captured tables in Avro (avro_change.h), NULL when none is */
	char *url;            /* the registry's base, for ce_dataschema */
	char why[512];
	char subject[REGISTRY_SUBJECT_MAX]; /* a new topic's subject, while it is looked up */
	header_list headers; /* the record's headers and ours (the router's stay as they were) */
	char id_text[16];
	int id_text_of;        /* the id id_text holds (0: none yet) */
	char dataschema[600];
	char **keyed;         /* router_source_name of the sources with key_format = "avro" */
	size_t n_keyed;
	char *key_buf;        /* the current record's key in the wire format */
	size_t key_cap;
} avro_state;

/* The schema of keys: an Avro string, in the object form, which every client parses (confluent-
 * kafka's Python client fails on the bare "string" a registry hands back). */
#define KEY_SCHEMA "{\"type\":\"string\"}"

/* The configured strategy (config.c accepts only these words). */
static registry_strategy strategy_of(const char *name)
{
	if (strcmp(name, "RecordNameStrategy") == 0)
		return REGISTRY_RECORD_NAME;
	if (strcmp(name, "TopicRecordNameStrategy") == 0)
		return REGISTRY_TOPIC_RECORD_NAME;
	return REGISTRY_TOPIC_NAME;
}

/* A strategy with the record name in the subject needs a named schema in every file. */
static int check_names(const contract_set *cs, registry_strategy st, const relay_config *cfg,
		       char *err, size_t errlen)
{
	for (size_t i = 0; st != REGISTRY_TOPIC_NAME && i < contract_set_count(cs); i++)
		if (!avjson_schema_name(contract_at(cs, i)->codec)) {
			snprintf(err, errlen, "%s:%d: %s%s%s: schema_registry.subject_strategy = \"%s\" "
				 "needs a named schema (a record, enum or fixed) for the subject's name",
				 cfg->path, cfg->subject_strategy_line, cfg->schema_dir,
				 cfg->schema_dir[0] ? "/" : "", contract_at(cs, i)->file,
				 cfg->registry_subject_strategy);
			return -1;
		}
	return 0;
}

/* The sources whose keys are Avro, by the name the router gives records (route.h). */
static void note_keyed_sources(avro_state *av, const relay_config *cfg)
{
	char name[600];

	av->keyed = xcalloc((size_t)cfg->n_sources + 1, sizeof(*av->keyed));
	for (int i = 0; i < cfg->n_sources; i++) {
		const source_config *s = &cfg->sources[i];
		if (strcmp(s->key_format, "avro") != 0)
			continue;
		snprintf(name, sizeof(name), s->table[0] ? "%s" : "message:%s",
			 s->table[0] ? s->table : s->message_prefix);
		av->keyed[av->n_keyed++] = xstrdup(name);
	}
}

void *encode_avro_setup(const relay_config *cfg, char *err, size_t errlen)
{
	avro_state *av = xcalloc(1, sizeof(*av));

	av->strategy = strategy_of(cfg->registry_subject_strategy);
	/* Captures derive their schemas: the directory is read only for Avro sources; contracts
	 * in the registry are fetched at start (av->contracts NULL until then). */
	av->prefix = cfg->any_avro ? cfg->contract_prefix : "";
	if (!av->prefix[0] &&
	    !(av->contracts = cfg->any_avro ? contract_set_load_cfg(cfg, err, errlen)
					    : contract_set_load(NULL, err, errlen))) {
		free(av);
		return NULL;
	}
	if (check_names(av->contracts, av->strategy, cfg, err, errlen) < 0) {
		contract_set_free(av->contracts);
		free(av);
		return NULL;
	}
	av->ids = xcalloc(contract_set_count(av->contracts) + 1, sizeof(*av->ids));
	av->cfg = cfg;
	note_keyed_sources(av, cfg);
	if (cfg->capture_avro)
		av->changes = avro_change_new(cfg->topic_prefix, cfg);
	av->url = xstrdup(cfg->registry_url);
	registry_tls tls = {cfg->registry_ca_file, cfg->registry_cert_file, cfg->registry_key_file,
			    cfg->registry_key_password};
	av->reg = registry_new(cfg->registry_url, cfg->registry_user, cfg->registry_password, &tls,
			       cfg->registry_timeout_ms, cfg->registry_auto_register);
	return av;
}

/*
 * The contracts kept in the registry, fetched once, then checked as files are at setup and given
 * their id slots: ENCODE_OK, or ENCODE_HOLD (the registry is down) / ENCODE_STOP with err.
 */
static int contracts_ready(avro_state *av, char *err, size_t errlen)
{
	if (av->contracts)
		return ENCODE_OK;
	registry_result rr = contract_set_ensure(&av->contracts, av->reg, av->prefix, err, errlen);
	if (rr != REGISTRY_OK)
		return rr == REGISTRY_DOWN ? ENCODE_HOLD : ENCODE_STOP;
	if (check_names(av->contracts, av->strategy, av->cfg, err, errlen) < 0) {
		contract_set_free(av->contracts);
		av->contracts = NULL;
		return ENCODE_STOP;
	}
	free(av->ids); /* empty: nothing was encoded without contracts */
	av->ids = xcalloc(contract_set_count(av->contracts) + 1, sizeof(*av->ids));
	av->check_pending = true; /* they are checked against the subjects they are published under */
	return ENCODE_OK;
}

int encode_avro_start(void *state, const relay_config *cfg, char *err, size_t errlen)
{
	avro_state *av = state;
	int rc = contracts_ready(av, err, errlen);

	if (rc == ENCODE_HOLD) {
		log_warn("cannot fetch the contracts from the schema registry at start: %s; starting "
			 "anyway: the first Avro event waits for them (the stream holds back)", err);
		return ENCODE_OK;
	}
	if (rc != ENCODE_OK)
		return rc;
	switch (compat_check(cfg, av->strategy, av->contracts, av->reg, err, errlen)) {
	case COMPAT_OK:
		av->check_pending = false;
		return ENCODE_OK;
	case COMPAT_DOWN:
		log_warn("cannot check the schema files against the schema registry at start: %s; "
			 "starting anyway: the check runs before the first event that needs the registry "
			 "(which holds the stream back until the registry answers)", err);
		av->check_pending = true;
		return ENCODE_OK;
	default:
		return ENCODE_STOP;
	}
}

/* The start's check, when the registry was down then: ENCODE_OK, or HOLD / STOP with *why. */
static int pending_check(avro_state *av, const char **why)
{
	switch (compat_check(av->cfg, av->strategy, av->contracts, av->reg, av->why, sizeof(av->why))) {
	case COMPAT_OK:
		av->check_pending = false;
		return ENCODE_OK;
	case COMPAT_DOWN:
		return *why = av->why, ENCODE_HOLD;
	default:
		return *why = av->why, ENCODE_STOP;
	}
}

void encode_avro_teardown(void *state)
{
	avro_state *av = state;

	for (size_t i = 0; i < contract_set_count(av->contracts); i++) {
		for (size_t k = 0; k < av->ids[i].n_ids; k++) {
			free(av->ids[i].ids[k].topic);
			free(av->ids[i].ids[k].subject);
		}
		free(av->ids[i].ids);
	}
	free(av->ids);
	for (size_t i = 0; i < av->n_keyed; i++)
		free(av->keyed[i]);
	free(av->keyed);
	free(av->key_buf);
	contract_set_free(av->contracts);
	free(av->url);
	header_list_free(&av->headers);
	avro_change_free(av->changes);
	registry_free(av->reg);
	free(av);
}

/* True, with its id, when another topic of the contract has this subject already. */
static bool known_id(const avro_ids *c, const char *subject, int *id)
{
	for (size_t i = 0; i < c->n_ids; i++)
		if (strcmp(c->ids[i].subject, subject) == 0)
			return *id = c->ids[i].id, true;
	return false;
}

/* A topic new to the contract: its subject named, its id from the registry, then kept. */
static int subject_id(avro_state *av, const route_msg *m, const contract *k, avro_ids *c,
		      const char **why)
{
	int id;

	if (registry_subject(av->strategy, m->topic, avjson_schema_name(k->codec), av->subject,
			     sizeof(av->subject)) < 0) {
		snprintf(av->why, sizeof(av->why), "schema %s has no record name for the subject "
			 "naming strategy (or the subject is too long)", k->file);
		return *why = av->why, ENCODE_STOP;
	}
	if (!known_id(c, av->subject, &id)) {
		if (av->check_pending) {
			int rc = pending_check(av, why);
			if (rc != ENCODE_OK)
				return rc;
		}
		registry_result r = registry_id(av->reg, av->subject, avjson_schema_text(k->codec), &id,
						av->why, sizeof(av->why));
		if (r != REGISTRY_OK) {
			*why = av->why;
			return r == REGISTRY_DOWN ? ENCODE_HOLD : ENCODE_STOP;
		}
		log_info("Avro: schema %s is id %d under subject %s", k->file, id, av->subject);
	}
	c->ids = xrealloc(c->ids, sizeof(*c->ids) * (c->n_ids + 1));
	c->ids[c->n_ids++] = (avro_subject_id){xstrdup(m->topic), xstrdup(av->subject), id};
	return ENCODE_OK;
}

/*
 * The subject and schema id of the contract's events on the record's topic: kept from an event
 * before, else named and asked of the registry (then kept). ENCODE_OK with *id and *subject
 * (valid until teardown), or ENCODE_HOLD / ENCODE_STOP with *why.
 */
static int schema_id(avro_state *av, const route_msg *m, size_t ci, int *id, const char **subject,
		     const char **why)
{
	avro_ids *c = &av->ids[ci];
	size_t i = 0;

	while (i < c->n_ids && strcmp(c->ids[i].topic, m->topic) != 0)
		i++;
	if (i == c->n_ids) { /* a topic new to the contract: added last */
		int rc = subject_id(av, m, contract_at(av->contracts, ci), c, why);
		if (rc != ENCODE_OK)
			return rc;
	}
	*id = c->ids[i].id;
	*subject = c->ids[i].subject;
	return ENCODE_OK;
}

/* True when a header has this name. */
static bool header_is(const route_header *h, const char *name)
{
	return h->name_len == strlen(name) && memcmp(h->name, name, h->name_len) == 0;
}

/*
 * The record's headers plus which schema it has: schema_id and schema_subject; with CloudEvents
 * on, ce_dataschema (the registry's URL of the schema) and content-type application/avro. The
 * headers are copied into this module's array (the router's own stay as they were).
 */
static void with_schema_headers(avro_state *av, route_msg *m, int id, const char *subject)
{
	bool cloudevents = false;

	header_list_adopt(&av->headers, m, 3); /* the content-type is rewritten in our copy */
	for (size_t i = 0; i < m->n_headers; i++) {
		route_header *h = &av->headers.h[i];
		cloudevents |= header_is(h, "ce_specversion");
		if (header_is(h, "content-type"))
			h->value = "application/avro", h->value_len = 16;
	}
	if (av->id_text_of != id || !av->id_text[0]) /* the same id event after event: written once */
		snprintf(av->id_text, sizeof(av->id_text), "%d", id), av->id_text_of = id;
	header_list_add_schema(&av->headers, m, av->id_text, subject, 1);
	if (cloudevents) {
		snprintf(av->dataschema, sizeof(av->dataschema), "%s/schemas/ids/%d", av->url, id);
		header_list_add(&av->headers, m, "ce_dataschema", av->dataschema);
	}
}

/* True when the record's source has key_format = "avro". */
static bool keyed(const avro_state *av, const record *rec)
{
	for (size_t i = 0; rec->source && i < av->n_keyed; i++)
		if (strcmp(av->keyed[i], rec->source) == 0)
			return true;
	return false;
}

/*
 * The key as an Avro string in the wire format (magic 0, the id of the key schema under the
 * key subject, the length as a zigzag varint, the bytes): a tombstone's key too, so that it
 * compacts with the event's. ENCODE_OK, or ENCODE_HOLD / ENCODE_STOP with *why (the registry).
 */
static int encode_key(avro_state *av, route_msg *m, const char **why)
{
	char subject[REGISTRY_SUBJECT_MAX];
	int id;
	size_t n = REGISTRY_WIRE_HEADER;

	if (!m->key)
		return ENCODE_OK;
	if (registry_key_subject(av->strategy, m->topic, "string", subject, sizeof(subject)) < 0)
		return *why = "the key subject is too long", ENCODE_STOP;
	registry_result r = registry_id(av->reg, subject, KEY_SCHEMA, &id, av->why, sizeof(av->why));
	if (r != REGISTRY_OK)
		return *why = av->why, r == REGISTRY_DOWN ? ENCODE_HOLD : ENCODE_STOP;
	if (av->key_cap < m->key_len + REGISTRY_WIRE_HEADER + 10) {
		av->key_cap = m->key_len + REGISTRY_WIRE_HEADER + 64;
		av->key_buf = xrealloc(av->key_buf, av->key_cap);
	}
	registry_wire_header(av->key_buf, id);
	for (uint64_t z = (uint64_t)m->key_len << 1; ; z >>= 7) { /* zigzag of a length: 2n */
		av->key_buf[n++] = (char)((z & 0x7f) | (z > 0x7f ? 0x80 : 0));
		if (z <= 0x7f)
			break;
	}
	memcpy(av->key_buf + n, m->key, m->key_len);
	m->text_key = m->key, m->text_key_len = m->key_len; /* for a dead letter */
	m->key = av->key_buf; /* until the next call; librdkafka copies it */
	m->key_len = n + m->key_len;
	return ENCODE_OK;
}

int encode_avro(void *state, record *rec, const char **why)
{
	avro_state *av = state;
	route_msg *m = rec->msg;
	char *out;
	size_t len;
	const char *subject;
	int id, rc;
	long ci;

	if (rec->kind != RECORD_OUTBOX) /* a captured table's: its schema is derived */
		return av->changes ? avro_change_encode(av->changes, av->reg, rec, why)
				   : (*why = "no captured table is in Avro", ENCODE_REJECT);
	if (!m->value) /* a tombstone has no payload to convert */
		return keyed(av, rec) ? encode_key(av, m, why) : ENCODE_OK;
	if ((rc = contracts_ready(av, av->why, sizeof(av->why))) != ENCODE_OK)
		return *why = av->why, rc;
	if ((ci = contract_find(av->contracts, m, av->why, sizeof(av->why))) < 0)
		return *why = av->why, ENCODE_REJECT;
	if (avjson_encode(contract_at(av->contracts, (size_t)ci)->codec, m->value, m->value_len,
			  REGISTRY_WIRE_HEADER, &out, &len, av->why, sizeof(av->why)) < 0)
		return *why = av->why, ENCODE_REJECT;
	if ((rc = schema_id(av, m, (size_t)ci, &id, &subject, why)) != ENCODE_OK)
		return rc;
	registry_wire_header(out, id);
	m->value = out; /* the codec's buffer, until its next call; librdkafka copies it */
	m->value_len = len;
	with_schema_headers(av, m, id, subject);
	return keyed(av, rec) ? encode_key(av, m, why) : ENCODE_OK;
}
