/* route.c: outbox row or message to Kafka record: topic template, key, value bytes, headers. */
#include "route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "log.h"
#include "xalloc.h"
#include "pgtime.h"
#include "template.h"

struct route_source {
	const source_config *cfg;
	char *schema; /* table sources */
	char *table;
	char *name;   /* "schema.table" or "message:prefix" */
	char *ce_source;
	const char *encoder; /* the format's encoder (encode.c): sources[].format, or json-contract */
	topic_template topic;
};

/*
 * One column of the row (or member of the message envelope): name and value spans, and the
 * value's text once put_text decoded it (so that a column used twice is decoded once).
 */
typedef struct {
	json_span name;
	json_span value;
	const char *text;
	size_t text_len;
	bool decoded;
} row_field;

/* A dead letter carries at most this much of the record (a too-large row must still fit). */
#define DLQ_MAX_VALUE 65536
#define DLQ_MAX_HEADER 256

struct router {
	const relay_config *cfg;
	route_source *sources;
	int n_sources;
	row_field *fields; /* of the current row */
	size_t n_fields;
	size_t fields_cap;
	char *scratch; /* decoded texts of the current row */
	size_t scratch_cap;
	char topic[256]; /* the current record's topic name (at most 249 characters) */
	char bad_text[160]; /* why a value is not valid UTF-8 ("" when all were) */
	bool is_message; /* the fields are members of a message envelope */
	route_header *headers;
	size_t headers_cap;
	char meta[2048]; /* dead-letter header values, each cut to DLQ_MAX_HEADER */
};

static int compile_source(route_source *s, const source_config *c, char *err, size_t errlen)
{
	char buf[600];

	s->cfg = c;
	if (c->table[0]) {
		const char *dot = strchr(c->table, '.');
		s->schema = xstrndup(c->table, (size_t)(dot - c->table));
		s->table = xstrdup(dot + 1);
		s->name = xstrdup(c->table);
	} else {
		snprintf(buf, sizeof(buf), "message:%s", c->message_prefix);
		s->name = xstrdup(buf);
	}
	snprintf(buf, sizeof(buf), "/outbox-relay/%s", c->table[0] ? c->table : c->message_prefix);
	s->ce_source = xstrdup(c->ce_source[0] ? c->ce_source : buf);
	s->encoder = c->contract && strcmp(c->format, "json") == 0 ? "json-contract" : c->format;
	return template_compile(&s->topic, c->topic, &template_outbox_vars, err, errlen);
}

router *router_new(const relay_config *cfg, char *err, size_t errlen)
{
	router *r = xcalloc(1, sizeof(*r));

	r->cfg = cfg;
	r->sources = xcalloc((size_t)cfg->n_sources + 1, sizeof(route_source));
	for (int i = 0; i < cfg->n_sources; i++) {
		r->n_sources = i + 1;
		if (compile_source(&r->sources[i], &cfg->sources[i], err, errlen) < 0) {
			router_free(r);
			return NULL;
		}
	}
	return r;
}

void router_free(router *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_sources; i++) {
		route_source *s = &r->sources[i];
		template_free(&s->topic);
		free(s->schema);
		free(s->table);
		free(s->name);
		free(s->ce_source);
	}
	free(r->sources);
	free(r->fields);
	free(r->scratch);
	free(r->headers);
	free(r);
}

const char *router_source_name(const route_source *src) { return src ? src->name : "?"; }

const char *router_source_format(const route_source *src) { return src ? src->encoder : NULL; }

/* A string span equals text once decoded (names with quotes or backslashes arrive escaped). */
static bool span_is(const json_span *s, const char *text)
{
	return s->kind == JSON_STRING && json_string_is(s, text, strlen(text));
}

const route_source *router_match(const router *r, const w2j_record *rec)
{
	for (int i = 0; i < r->n_sources; i++) {
		const route_source *s = &r->sources[i];
		if (rec->action == W2J_INSERT && s->table && span_is(&rec->schema, s->schema) &&
		    span_is(&rec->table, s->table))
			return s;
		if (rec->action == W2J_MESSAGE && !s->table && span_is(&rec->prefix, s->cfg->message_prefix))
			return s;
	}
	return NULL;
}

bool router_is_source_table(const router *r, const w2j_record *rec)
{
	for (int i = 0; i < r->n_sources; i++) {
		const route_source *s = &r->sources[i];
		if (s->table && span_is(&rec->schema, s->schema) && span_is(&rec->table, s->table))
			return true;
	}
	return false;
}

static void add_field(router *r, const json_span *name, const json_span *value)
{
	if (r->n_fields == r->fields_cap) {
		r->fields_cap = r->fields_cap ? r->fields_cap * 2 : 32;
		r->fields = xrealloc(r->fields, sizeof(row_field) * r->fields_cap);
	}
	row_field *f = &r->fields[r->n_fields++];
	f->name = *name;
	f->value = *value;
	f->decoded = false;
}

/* A field by name; NULL when the row has no such column (or the envelope no such member). */
static const json_span *field_get(const router *r, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < r->n_fields; i++)
		if (json_key_is(&r->fields[i].name, name, n))
			return &r->fields[i].value;
	return NULL;
}

static int collect_columns(router *r, const w2j_record *rec)
{
	json_cursor it;
	w2j_column col;
	int rc;

	if (rec->cols) { /* kept by w2j_decode: no second scan */
		for (size_t i = 0; i < rec->n_cols; i++)
			add_field(r, &rec->cols[i].name, &rec->cols[i].value);
		return 0;
	}
	if (w2j_columns_open(&it, &rec->columns) < 0)
		return -1;
	while ((rc = w2j_columns_next(&it, &col)) == 1)
		add_field(r, &col.name, &col.value);
	return rc;
}

/* The row field whose value span v is, or NULL for a span from elsewhere (the record itself). */
static row_field *field_of(router *r, const json_span *v)
{
	if (!r->fields)
		return NULL;
	uintptr_t a = (uintptr_t)v, lo = (uintptr_t)r->fields, hi = (uintptr_t)(r->fields + r->n_fields);
	if (a < lo || a >= hi)
		return NULL;
	return &r->fields[(a - lo) / sizeof(row_field)];
}

/* How many bytes from p on are ASCII, in whole blocks of 32 (SSE2, which x86-64 always has). */
static size_t ascii_blocks(const unsigned char *p, size_t n)
{
	size_t i = 0;
#if defined(__SSE2__)
	for (; i + 32 <= n; i += 32) {
		__m128i a = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
		__m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + i + 16));
		if (_mm_movemask_epi8(_mm_or_si128(a, b)) != 0)
			break;
	}
#else
	(void)p;
	(void)n;
#endif
	return i;
}

/* Length of the valid UTF-8 prefix of p[0..n): n when all of it is valid. */
static size_t utf8_valid_prefix(const unsigned char *p, size_t n)
{
	size_t i = ascii_blocks(p, n);

	while (i < n) {
		/* The fast path: eight ASCII bytes at a time. */
		uint64_t w;
		if (i + 8 <= n && (memcpy(&w, p + i, 8), (w & 0x8080808080808080ULL) == 0)) {
			i += 8;
			continue;
		}
		unsigned char c = p[i];
		size_t need;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			need = 1, cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2, cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3, cp = c & 0x07;
		} else {
			return i;
		}
		if (n - i <= need)
			return i;
		for (size_t k = 1; k <= need; k++) {
			if ((p[i + k] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3F);
		}
		/* Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8. */
		if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += need + 1;
	}
	return n;
}

/*
 * Says which value is not valid UTF-8 (a column, an envelope member, or what), for the dead
 * letter's reason. Kafka consumers expect text; such a value is never published.
 */
static void note_bad_utf8(router *r, const json_span *v, const char *what, size_t at)
{
	const row_field *f = field_of(r, v);
	if (f)
		snprintf(r->bad_text, sizeof(r->bad_text), "invalid UTF-8 in %s %.*s (byte %zu of its text)",
			 r->is_message ? "envelope member" : "column", (int)(f->name.len > 63 ? 63 : f->name.len),
			 f->name.ptr, at);
	else
		snprintf(r->bad_text, sizeof(r->bad_text), "invalid UTF-8 in %s (byte %zu of its text)",
			 what ? what : "a value", at);
}

/*
 * A value as text: a string decoded, a number or bool as its JSON text (an object or array too,
 * as written). *out is NULL for null or absent values. Text without escapes is the record's own
 * bytes; escaped text is decoded once per field into *pos. -1 for an invalid escape, or for
 * bytes that are not UTF-8 (r->bad_text says where). Escapes always decode to valid UTF-8, so
 * only the raw bytes are checked, and only when some byte is not ASCII.
 */
static int put_text(router *r, char **pos, const json_span *v, const char *what, const char **out,
		    size_t *len)
{
	row_field *f = field_of(r, v);

	if (!v || v->kind == JSON_NONE || v->kind == JSON_NULL) {
		*out = NULL;
		*len = 0;
		return 0;
	}
	if (f && f->decoded) {
		*out = f->text;
		*len = f->text_len;
		return 0;
	}
	/* Objects and arrays: wal2json never gives them as column values, and an envelope
	 * member is part of the content checked already; numbers and literals are ASCII. */
	if (v->kind == JSON_STRING ||
	    (!r->is_message && (v->kind == JSON_OBJECT || v->kind == JSON_ARRAY))) {
		size_t ok = utf8_valid_prefix((const unsigned char *)v->ptr, v->len);
		if (ok < v->len)
			return note_bad_utf8(r, v, what, ok), -1;
	}
	if (v->kind != JSON_STRING || !v->escaped) {
		*out = v->ptr; /* the record's own bytes, e.g. a numeric id */
		*len = v->len;
	} else {
		long n = json_unescape(v, *pos);
		if (n < 0)
			return -1;
		*out = *pos;
		*len = (size_t)n;
		*pos += n;
	}
	if (f) {
		f->text = *out;
		f->text_len = *len;
		f->decoded = true;
	}
	return 0;
}

/* Fields of a message: the members of its JSON envelope (see docs/sql.md). */
static int collect_envelope(router *r, char **pos, const w2j_record *rec, const char **why)
{
	const char *text;
	size_t len;
	json_cursor c;
	json_span key, val;
	int rc;

	if (!rec->transactional)
		return *why = "non-transactional message (only transactional messages keep their "
			      "place in commit order)", -1;
	if (put_text(r, pos, &rec->content, "the message content", &text, &len) < 0 || !text)
		return *why = "malformed message envelope: content is not text", -1;
	json_cursor_init(&c, text, len);
	if (json_enter_object(&c) < 0)
		return *why = "malformed message envelope: not a JSON object", -1;
	while ((rc = json_object_next(&c, &key, &val)) == 1)
		add_field(r, &key, &val);
	if (rc < 0 || !json_at_end(&c))
		return *why = "malformed message envelope: not a JSON object", -1;
	return 0;
}

/*
 * Makes room for need bytes of scratch. It grows by half again (rows vary a little), and gives
 * back a big buffer once rows are small again, so one huge row does not pin its memory.
 */
static void reserve(router *r, size_t need)
{
	bool shrink = r->scratch_cap > (1u << 20) && need < r->scratch_cap / 8;
	if (need <= r->scratch_cap && !shrink)
		return;
	free(r->scratch);
	r->scratch_cap = need + need / 2;
	r->scratch = xmalloc(r->scratch_cap);
}

static route_header *new_header(router *r, route_msg *m, const char *name, size_t name_len)
{
	if (m->n_headers == r->headers_cap) {
		r->headers_cap = r->headers_cap ? r->headers_cap * 2 : 16;
		r->headers = xrealloc(r->headers, sizeof(route_header) * r->headers_cap);
	}
	route_header *h = &r->headers[m->n_headers++];
	h->name = name;
	h->name_len = name_len;
	h->value = NULL;
	h->value_len = 0;
	m->headers = r->headers;
	return h;
}

/* A header whose value is a field's text. */
static int add_field_header(router *r, char **pos, route_msg *m, const char *name,
			    const json_span *v)
{
	route_header *h = new_header(r, m, name, strlen(name));
	return put_text(r, pos, v, NULL, &h->value, &h->value_len);
}

/* Adds one header per member of the headers object, in the order the object keeps them. */
static int add_json_headers(router *r, char **pos, const json_span *hcol, route_msg *m,
			    const char **why)
{
	const char *text;
	size_t len;
	json_cursor c;
	json_span key, val;
	int rc;

	if (hcol && hcol->kind == JSON_OBJECT) {
		text = hcol->ptr; /* an envelope member: the object itself */
		len = hcol->len;
	} else if (put_text(r, pos, hcol, NULL, &text, &len) < 0) {
		return *why = "headers hold an invalid escape", -1;
	}
	if (!text)
		return 0;
	json_cursor_init(&c, text, len);
	if (json_enter_object(&c) < 0)
		return *why = "headers are not a JSON object", -1;
	while ((rc = json_object_next(&c, &key, &val)) == 1) {
		route_header *h = new_header(r, m, NULL, 0);
		if (put_text(r, pos, &key, "a header name", &h->name, &h->name_len) < 0 ||
		    put_text(r, pos, &val, "a header value", &h->value, &h->value_len) < 0)
			return *why = "headers hold an invalid escape", -1;
	}
	if (rc < 0 || !json_at_end(&c))
		return *why = "headers are not a JSON object", -1;
	return 0;
}

/* Built-in placeholders when the row has no field of that name. */
static bool builtin_value(const route_source *s, const w2j_record *rec, const char *name,
			  json_span *out)
{
	if (strcmp(name, "schema") == 0 && s->table)
		*out = rec->schema;
	else if (strcmp(name, "table") == 0 && s->table)
		*out = rec->table;
	else if (strcmp(name, "prefix") == 0 && !s->table)
		*out = rec->prefix;
	else
		return false;
	return true;
}

/* What a topic placeholder of a row reads: the router, the row's source, its decoded texts. */
typedef struct {
	router *r;
	const route_source *s;
	const w2j_record *rec;
	char **pos;
} topic_ctx;

/* A placeholder's text: the row's field of that name, else a built-in (schema, table, prefix). */
static int topic_value(void *ctx, const char *name, const char **text, size_t *len,
		       const char **why)
{
	topic_ctx *c = ctx;
	json_span b;
	const json_span *v = field_get(c->r, name);

	if (!v && builtin_value(c->s, c->rec, name, &b))
		v = &b;
	if (put_text(c->r, c->pos, v, "a field of the topic template", text, len) < 0)
		return *why = "a field of the topic template holds an invalid escape", -1;
	return 0;
}

/*
 * Expands the template into r->topic as a NUL-terminated name; field texts are decoded into
 * *pos first (once per field) and then copied, so a name never needs more than 250 bytes.
 */
static int expand_topic(router *r, const route_source *s, char **pos, const w2j_record *rec,
			const char **out, const char **why)
{
	topic_ctx c = {r, s, rec, pos};

	if (template_expand(&s->topic, topic_value, &c, r->topic, why) < 0)
		return -1;
	*out = r->topic;
	return 0;
}

/* Writes ms since the epoch as RFC 3339 in UTC ("2026-11-22T09:00:00.123Z"). */
static size_t format_rfc3339(int64_t ms, char *out)
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	return n + (size_t)snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

/* The record timestamp the source asks for: a column, the commit time, or none (0). */
static int pick_timestamp(router *r, const route_source *s, const w2j_record *rec, char **pos,
			  int64_t *ms, const char **why)
{
	const char *text;
	size_t len;
	const char *which = s->cfg->timestamp;

	*ms = 0;
	if (!which[0])
		return 0;
	const json_span *v = strcmp(which, "commit") == 0 ? &rec->timestamp : field_get(r, which);
	if (put_text(r, pos, v, "the timestamp", &text, &len) < 0 || !text)
		return *why = "the timestamp field is null or missing", -1;
	if (!pgtime_parse(text, len, ms))
		return *why = "the timestamp field is not a PostgreSQL timestamptz", -1;
	if (*ms <= 0)
		return *why = "the timestamp is at or before 1970-01-01 (Kafka needs a later one)", -1;
	return 0;
}

/* Key, value and tombstones: a null key, or a null value without tombstones, cannot go out. */
static int set_key_value(router *r, const route_source *s, char **pos, route_msg *m,
			 const char **why)
{
	if (put_text(r, pos, field_get(r, s->cfg->key), NULL, &m->key, &m->key_len) < 0 ||
	    put_text(r, pos, field_get(r, s->cfg->value), NULL, &m->value, &m->value_len) < 0)
		return *why = "the key or value holds an invalid escape", -1;
	if (!m->key)
		return *why = "the key is null or missing", -1;
	if (s->cfg->tombstones && m->value && m->value_len == 0)
		m->value = NULL;
	if (!m->value && !s->cfg->tombstones)
		return *why = "the value is null or missing (set tombstones = true to publish it as "
			      "a tombstone)", -1;
	return 0;
}

/* CloudEvents binary mode: the event's attributes as ce_* headers. */
static int add_cloudevents(router *r, const route_source *s, char **pos, route_msg *m)
{
	route_header *h;

	h = new_header(r, m, "ce_specversion", 14);
	h->value = "1.0", h->value_len = 3;
	if (add_field_header(r, pos, m, "ce_id", field_get(r, s->cfg->event_id)) < 0 ||
	    add_field_header(r, pos, m, "ce_type", field_get(r, s->cfg->event_type)) < 0)
		return -1;
	h = new_header(r, m, "ce_source", 9);
	h->value = s->ce_source, h->value_len = strlen(s->ce_source);
	if (m->timestamp_ms > 0) {
		h = new_header(r, m, "ce_time", 7);
		h->value = *pos;
		h->value_len = format_rfc3339(m->timestamp_ms, *pos);
		*pos += h->value_len;
	}
	h = new_header(r, m, "content-type", 12);
	h->value = "application/json", h->value_len = 16;
	return 0;
}

/* True when the source lists a column named schema_version among its headers. */
static bool lists_schema_version(const route_source *s)
{
	for (int i = 0; i < s->cfg->n_headers; i++)
		if (strcmp(s->cfg->headers[i], "schema_version") == 0)
			return true;
	return false;
}

/*
 * The contract's version when the row has one (its column not null): kept in the record for the
 * encoders (contract.h) and published as the schema_version header for consumers. A column
 * listed in headers under that name keeps its place instead (as before 1.3 of the kit).
 */
static int add_schema_version(router *r, const route_source *s, char **pos, route_msg *m)
{
	const json_span *v = s->cfg->schema_version[0] ? field_get(r, s->cfg->schema_version) : NULL;

	if (!v || v->kind == JSON_NULL || v->kind == JSON_NONE)
		return 0;
	if (put_text(r, pos, v, NULL, &m->schema_version, &m->schema_version_len) < 0)
		return -1;
	if (!m->schema_version || lists_schema_version(s))
		return 0;
	route_header *h = new_header(r, m, "schema_version", 14);
	h->value = m->schema_version, h->value_len = m->schema_version_len;
	return 0;
}

/* Headers: event_id, event_type, schema_version, the listed columns, CloudEvents, then the
 * headers object. */
static int add_headers(router *r, const route_source *s, char **pos, route_msg *m, const char **why)
{
	if (add_field_header(r, pos, m, "event_id", field_get(r, s->cfg->event_id)) < 0 ||
	    add_field_header(r, pos, m, "event_type", field_get(r, s->cfg->event_type)) < 0)
		return *why = "the event id or type holds an invalid escape", -1;
	if (add_schema_version(r, s, pos, m) < 0)
		return *why = "the schema version holds an invalid escape", -1;
	for (int i = 0; i < s->cfg->n_headers; i++)
		if (add_field_header(r, pos, m, s->cfg->headers[i], field_get(r, s->cfg->headers[i])) < 0)
			return *why = "a header column holds an invalid escape", -1;
	if (s->cfg->cloudevents && add_cloudevents(r, s, pos, m) < 0)
		return *why = "a CloudEvents field holds an invalid escape", -1;
	if (s->cfg->headers_column[0])
		return add_json_headers(r, pos, field_get(r, s->cfg->headers_column), m, why);
	return 0;
}

/*
 * Scratch for the decoded texts: each field is decoded at most once (into at most its own
 * length), the members of a headers object at most once more, a message's content once; plus
 * ce_time. So about twice the record, not once per use of a field.
 */
static size_t scratch_need(const w2j_record *rec)
{
	return 2 * rec->columns.len + 3 * rec->content.len + rec->timestamp.len + 64;
}

static int build(router *r, const route_source *s, const w2j_record *rec, route_msg *m,
		 const char **why)
{
	char *pos = r->scratch;

	if (rec->action == W2J_MESSAGE) {
		if (collect_envelope(r, &pos, rec, why) < 0)
			return -1;
	} else if (collect_columns(r, rec) < 0) {
		return *why = "malformed columns array", -1;
	}
	if (expand_topic(r, s, &pos, rec, &m->topic, why) < 0 || set_key_value(r, s, &pos, m, why) < 0 ||
	    pick_timestamp(r, s, rec, &pos, &m->timestamp_ms, why) < 0)
		return -1;
	return add_headers(r, s, &pos, m, why);
}

int router_build(router *r, const route_source *s, const w2j_record *rec, route_msg *m,
		 const char **why)
{
	memset(m, 0, sizeof(*m));
	r->n_fields = 0;
	r->bad_text[0] = '\0';
	r->is_message = rec->action == W2J_MESSAGE;
	reserve(r, scratch_need(rec));
	if (build(r, s, rec, m, why) == 0)
		return 0;
	if (r->bad_text[0]) /* the caller's reason named an escape; the text was not UTF-8 */
		*why = r->bad_text;
	return -1;
}

/* Appends a NUL-terminated header value to the meta buffer. */
static void meta_header(router *r, route_msg *m, size_t *used, const char *name, const char *fmt,
			const char *a, size_t alen)
{
	route_header *h = new_header(r, m, name, strlen(name));
	size_t room = sizeof(r->meta) - *used;
	h->value = r->meta + *used;
	h->value_len = 0;
	if (room < 2)
		return; /* full: an empty value rather than an overrun */
	int n = snprintf(r->meta + *used, room, fmt, (int)(alen > DLQ_MAX_HEADER ? DLQ_MAX_HEADER : alen), a);
	if (n < 0)
		n = 0;
	if ((size_t)n >= room)
		n = (int)(room - 1);
	h->value_len = (size_t)n;
	*used += (size_t)n + 1;
}

void router_dead_letter(router *r, const route_source *src, const w2j_record *rec, const char *raw,
			size_t rawlen, const char *why, const char *topic, route_msg *m)
{
	router_dead_letter_named(r, router_source_name(src), rec, raw, rawlen, why, topic, m);
}

void router_dead_letter_named(router *r, const char *source, const w2j_record *rec, const char *raw,
			      size_t rawlen, const char *why, const char *topic, route_msg *m)
{
	char lsn[LSN_TEXT_MAX], xid[24];
	size_t used = 0;
	const char *key = m->text_key ? m->text_key : m->key;
	size_t key_len = m->text_key ? m->text_key_len : m->key_len;

	memset(m, 0, sizeof(*m));
	m->topic = r->cfg->dead_letter_topic;
	m->key = key; /* the event's key when it was known */
	m->key_len = key_len;
	m->value = raw;
	m->value_len = rawlen > DLQ_MAX_VALUE ? DLQ_MAX_VALUE : rawlen;
	lsn_format(rec->lsn, lsn);
	snprintf(xid, sizeof(xid), "%llu", (unsigned long long)rec->xid);
	meta_header(r, m, &used, "dlq_reason", "%.*s", why, strlen(why));
	meta_header(r, m, &used, "dlq_source", "%.*s", source, strlen(source));
	meta_header(r, m, &used, "dlq_lsn", "%.*s", lsn, strlen(lsn));
	meta_header(r, m, &used, "dlq_xid", "%.*s", xid, strlen(xid));
	if (topic)
		meta_header(r, m, &used, "dlq_topic", "%.*s", topic, strlen(topic));
	if (rawlen > DLQ_MAX_VALUE) {
		char n[24];
		snprintf(n, sizeof(n), "%zu", rawlen);
		meta_header(r, m, &used, "dlq_truncated_from", "%.*s", n, strlen(n));
	}
}

size_t router_utf8_valid_prefix(const char *text, size_t len)
{
	return utf8_valid_prefix((const unsigned char *)text, len);
}
