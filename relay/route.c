/* route.c: outbox row to Kafka record: topic template, key, payload bytes, headers. */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* What a ${...} placeholder of the topic template stands for. */
typedef enum { SEG_LITERAL, SEG_AGGREGATE_TYPE, SEG_EVENT_TYPE, SEG_SCHEMA, SEG_TABLE } seg_kind;

typedef struct {
	seg_kind kind;
	char *text; /* SEG_LITERAL */
	size_t len;
} topic_seg;

typedef struct {
	char *schema;
	char *table;
} table_name;

struct router {
	topic_seg *segs;
	size_t n_segs;
	size_t n_placeholders;
	size_t literal_len;
	table_name *tables;
	int n_tables;
	char *scratch; /* decoded texts of the current row */
	size_t scratch_cap;
	route_header *headers;
	size_t headers_cap;
};

/* The outbox columns read from each row, decoded. */
typedef struct {
	json_span id, aggregate_type, aggregate_id, event_type, payload, headers;
} outbox_cols;

static const struct {
	const char *name;
	seg_kind kind;
} placeholders[] = {
	{"aggregate_type", SEG_AGGREGATE_TYPE},
	{"event_type", SEG_EVENT_TYPE},
	{"schema", SEG_SCHEMA},
	{"table", SEG_TABLE},
};

static void add_seg(router *r, seg_kind kind, const char *text, size_t len)
{
	r->segs = realloc(r->segs, sizeof(topic_seg) * (r->n_segs + 1));
	topic_seg *s = &r->segs[r->n_segs++];
	s->kind = kind;
	s->text = NULL;
	s->len = len;
	if (kind == SEG_LITERAL) {
		s->text = malloc(len);
		memcpy(s->text, text, len);
		r->literal_len += len;
	} else {
		r->n_placeholders++;
	}
}

/* Kafka accepts topic names of 1 to 249 characters from [a-zA-Z0-9._-]. */
static bool topic_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-';
}

/* A whole topic name: 1 to 249 allowed characters, and neither "." nor "..". */
static bool topic_name_ok(const char *t, size_t len)
{
	if (len == 0 || len > 249 || (len == 1 && t[0] == '.') || (len == 2 && memcmp(t, "..", 2) == 0))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!topic_char_ok(t[i]))
			return false;
	return true;
}

/* Rejects literal text no topic name may hold, so that a bad template fails at startup. */
static int check_literals(const router *r, const char *tmpl, char *err, size_t errlen)
{
	for (size_t i = 0; i < r->n_segs; i++) {
		const topic_seg *s = &r->segs[i];
		for (size_t k = 0; s->kind == SEG_LITERAL && k < s->len; k++) {
			if (!topic_char_ok(s->text[k])) {
				snprintf(err, errlen, "topic template '%s' holds a character Kafka "
					 "topic names cannot have (allowed: a-z A-Z 0-9 . _ -)", tmpl);
				return -1;
			}
		}
	}
	if (r->literal_len > 249) {
		snprintf(err, errlen, "topic template '%s' is longer than 249 characters", tmpl);
		return -1;
	}
	if (r->n_placeholders == 0 && !topic_name_ok(r->segs[0].text, r->segs[0].len)) {
		snprintf(err, errlen, "topic template '%s' is not a valid Kafka topic name", tmpl);
		return -1;
	}
	return 0;
}

/* Splits "outbox.${aggregate_type}" into literal and placeholder segments. */
static int compile_template(router *r, const char *tmpl, char *err, size_t errlen)
{
	const char *p = tmpl;

	while (*p) {
		const char *open = strstr(p, "${");
		if (!open) {
			add_seg(r, SEG_LITERAL, p, strlen(p));
			break;
		}
		if (open > p)
			add_seg(r, SEG_LITERAL, p, (size_t)(open - p));
		const char *close = strchr(open, '}');
		if (!close) {
			snprintf(err, errlen, "topic template '%s': '${' without '}'", tmpl);
			return -1;
		}
		size_t nlen = (size_t)(close - open - 2);
		size_t i;
		for (i = 0; i < sizeof(placeholders) / sizeof(placeholders[0]); i++)
			if (strlen(placeholders[i].name) == nlen &&
			    memcmp(placeholders[i].name, open + 2, nlen) == 0)
				break;
		if (i == sizeof(placeholders) / sizeof(placeholders[0])) {
			snprintf(err, errlen,
				 "topic template '%s': unknown placeholder '${%.*s}' (known: "
				 "aggregate_type, event_type, schema, table)",
				 tmpl, (int)nlen, open + 2);
			return -1;
		}
		add_seg(r, placeholders[i].kind, NULL, 0);
		p = close + 1;
	}
	if (r->n_segs == 0) {
		snprintf(err, errlen, "topic template is empty");
		return -1;
	}
	return check_literals(r, tmpl, err, errlen);
}

/* Splits the "schema.table" entries of the table list; both parts must be non-empty. */
static int compile_tables(router *r, const relay_config *cfg, char *err, size_t errlen)
{
	r->tables = calloc((size_t)cfg->n_tables + 1, sizeof(table_name));
	for (int i = 0; i < cfg->n_tables; i++) {
		const char *name = cfg->tables[i], *dot = strchr(name, '.');
		if (!dot || dot == name || dot[1] == '\0') {
			snprintf(err, errlen, "table '%s' is not schema.table", name);
			return -1;
		}
		r->tables[i].schema = strndup(name, (size_t)(dot - name));
		r->tables[i].table = strdup(dot + 1);
		r->n_tables = i + 1;
	}
	return 0;
}

router *router_new(const relay_config *cfg, char *err, size_t errlen)
{
	router *r = calloc(1, sizeof(*r));

	if (compile_template(r, cfg->topic_template, err, errlen) < 0 ||
	    compile_tables(r, cfg, err, errlen) < 0)
		goto fail;
	return r;
fail:
	router_free(r);
	return NULL;
}

void router_free(router *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_segs; i++)
		free(r->segs[i].text);
	free(r->segs);
	for (int i = 0; i < r->n_tables; i++) {
		free(r->tables[i].schema);
		free(r->tables[i].table);
	}
	free(r->tables);
	free(r->scratch);
	free(r->headers);
	free(r);
}

static bool span_is(const json_span *s, const char *text)
{
	size_t n = strlen(text);
	return s->kind == JSON_STRING && !s->escaped && s->len == n && memcmp(s->ptr, text, n) == 0;
}

bool router_is_outbox(const router *r, const w2j_record *rec)
{
	for (int i = 0; i < r->n_tables; i++)
		if (span_is(&rec->schema, r->tables[i].schema) &&
		    span_is(&rec->table, r->tables[i].table))
			return true;
	return false;
}

/* Picks the outbox columns out of the row's columns array. */
static int collect_columns(const w2j_record *rec, outbox_cols *c)
{
	json_cursor it;
	w2j_column col;
	int r;

	memset(c, 0, sizeof(*c));
	if (w2j_columns_open(&it, &rec->columns) < 0)
		return -1;
	while ((r = w2j_columns_next(&it, &col)) == 1) {
		const json_span *n = &col.name;
		if (JSON_KEY_IS(n, "id"))
			c->id = col.value;
		else if (JSON_KEY_IS(n, "aggregate_type"))
			c->aggregate_type = col.value;
		else if (JSON_KEY_IS(n, "aggregate_id"))
			c->aggregate_id = col.value;
		else if (JSON_KEY_IS(n, "event_type"))
			c->event_type = col.value;
		else if (JSON_KEY_IS(n, "payload"))
			c->payload = col.value;
		else if (JSON_KEY_IS(n, "headers"))
			c->headers = col.value;
	}
	return r;
}

/*
 * Writes a value as text into *pos: a string decoded, a number or bool as its JSON text.
 * Sets *out to NULL for null or absent values. The caller reserved room for it.
 */
static int put_text(char **pos, const json_span *v, const char **out, size_t *len)
{
	if (v->kind == JSON_NONE || v->kind == JSON_NULL) {
		*out = NULL;
		*len = 0;
		return 0;
	}
	if (v->kind != JSON_STRING) {
		*out = v->ptr; /* the record's own bytes, e.g. a numeric id */
		*len = v->len;
		return 0;
	}
	long n = json_unescape(v, *pos);
	if (n < 0)
		return -1;
	*out = *pos;
	*len = (size_t)n;
	*pos += n;
	return 0;
}

static void reserve(router *r, size_t need)
{
	if (need <= r->scratch_cap)
		return;
	free(r->scratch);
	r->scratch_cap = need * 2;
	r->scratch = malloc(r->scratch_cap);
	if (!r->scratch) {
		log_error("out of memory");
		abort();
	}
}

static route_header *new_header(router *r, size_t i)
{
	if (i >= r->headers_cap) {
		r->headers_cap = r->headers_cap ? r->headers_cap * 2 : 16;
		r->headers = realloc(r->headers, sizeof(route_header) * r->headers_cap);
		if (!r->headers) {
			log_error("out of memory");
			abort();
		}
	}
	return &r->headers[i];
}

/* Adds one header per member of the headers jsonb object, in the order jsonb keeps them. */
static int add_json_headers(router *r, char **pos, const json_span *hcol, route_msg *m,
			    const char **why)
{
	const char *text;
	size_t len;
	json_cursor c;
	json_span whole, key, val;
	int rc;

	if (put_text(pos, hcol, &text, &len) < 0)
		return *why = "headers column holds an invalid escape", -1;
	if (!text)
		return 0;
	json_cursor_init(&c, text, len);
	if (json_read_value(&c, &whole) < 0 || !json_at_end(&c) || whole.kind != JSON_OBJECT)
		return *why = "headers column is not a JSON object", -1;
	json_object_open(&c, &whole);
	while ((rc = json_object_next(&c, &key, &val)) == 1) {
		route_header *h = new_header(r, m->n_headers);
		if (put_text(pos, &key, &h->name, &h->name_len) < 0 ||
		    put_text(pos, &val, &h->value, &h->value_len) < 0)
			return *why = "headers object holds an invalid escape", -1;
		m->n_headers++;
	}
	m->headers = r->headers;
	return rc < 0 ? (*why = "headers column is not a JSON object", -1) : 0;
}

static const json_span *seg_value(const topic_seg *s, const outbox_cols *c, const w2j_record *rec)
{
	switch (s->kind) {
	case SEG_AGGREGATE_TYPE: return &c->aggregate_type;
	case SEG_EVENT_TYPE: return &c->event_type;
	case SEG_SCHEMA: return &rec->schema;
	case SEG_TABLE: return &rec->table;
	default: return NULL;
	}
}

/* Expands the template into *pos as a NUL-terminated name. */
static int expand_topic(const router *r, char **pos, const outbox_cols *c, const w2j_record *rec,
			const char **out, const char **why)
{
	char *start = *pos;

	for (size_t i = 0; i < r->n_segs; i++) {
		const topic_seg *s = &r->segs[i];
		if (s->kind == SEG_LITERAL) {
			memcpy(*pos, s->text, s->len);
			*pos += s->len;
			continue;
		}
		const json_span *v = seg_value(s, c, rec);
		if (v->kind != JSON_STRING)
			return *why = "a column the topic template needs is null or missing", -1;
		long n = json_unescape(v, *pos);
		if (n < 0)
			return *why = "a column the topic template needs holds an invalid escape", -1;
		*pos += n;
	}
	if (!topic_name_ok(start, (size_t)(*pos - start)))
		return *why = "the topic name made from the template is not a valid Kafka topic name", -1;
	*(*pos)++ = '\0';
	*out = start;
	return 0;
}

int router_outbox(router *r, const w2j_record *rec, route_msg *m, const char **why)
{
	outbox_cols c;
	char *pos;
	size_t reclen = rec->columns.len + rec->schema.len + rec->table.len;

	memset(m, 0, sizeof(*m));
	if (collect_columns(rec, &c) < 0)
		return *why = "malformed columns array", -1;
	if (c.payload.kind == JSON_NONE || c.aggregate_id.kind == JSON_NONE)
		return *why = "the row has no payload or aggregate_id column", -1;
	/* Decoding never grows text: each part fits in the record's own length. */
	reserve(r, reclen * (2 + r->n_placeholders) + r->literal_len + 1);
	pos = r->scratch;
	if (expand_topic(r, &pos, &c, rec, &m->topic, why) < 0)
		return -1;
	if (put_text(&pos, &c.aggregate_id, &m->key, &m->key_len) < 0 ||
	    put_text(&pos, &c.payload, &m->value, &m->value_len) < 0)
		return *why = "a key or payload value holds an invalid escape", -1;
	route_header *h = new_header(r, 0);
	h->name = "event_id";
	h->name_len = 8;
	if (put_text(&pos, &c.id, &h->value, &h->value_len) < 0)
		return *why = "the id value holds an invalid escape", -1;
	h = new_header(r, 1);
	h->name = "event_type";
	h->name_len = 10;
	if (put_text(&pos, &c.event_type, &h->value, &h->value_len) < 0)
		return *why = "the event_type value holds an invalid escape", -1;
	m->n_headers = 2;
	m->headers = r->headers;
	return add_json_headers(r, &pos, &c.headers, m, why);
}
