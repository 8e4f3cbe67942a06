/* protect.c: JSON path selection and rewriting: finds the protected fields of a JSON text and rewrites them. */
#include "protect.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "xalloc.h"

/* Why a text where paths must be looked for is refused. */
static const char NOT_JSON[] = "the value is not valid JSON, so its protected fields cannot be found";

struct protect_rw {
	const protect_path **levels; /* (PROTECT_MAX_DEPTH + 1) lists of cap paths each */
	size_t cap;
	strbuf clear;          /* a string value's decoded text */
	const char *copied;    /* input copied to out up to here */
	strbuf *out;
	protect_value_fn fn;
	void *ctx;
	const char **why;
	bool changed;
};

/* Decodes one RFC 6901 part (~1 is '/', ~0 is '~') into a new string; NULL for a bad escape. */
static char *decode_part(const char *s, size_t n, size_t *out_len)
{
	char *d = xmalloc(n + 1);
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] != '~') {
			d[k++] = s[i];
			continue;
		}
		if (i + 1 == n || (s[i + 1] != '0' && s[i + 1] != '1')) {
			free(d);
			return NULL;
		}
		d[k++] = s[++i] == '1' ? '/' : '~';
	}
	d[k] = '\0';
	*out_len = k;
	return d;
}

int protect_path_parse(const char *text, int rule, bool drop, protect_path *p)
{
	const char *s = text;

	memset(p, 0, sizeof(*p));
	p->rule = rule;
	p->drop = drop;
	if (*s != '/')
		return -1;
	while (*s == '/') {
		const char *e = strchr(s + 1, '/');
		size_t n = e ? (size_t)(e - s - 1) : strlen(s + 1);
		if (n == 0 || p->depth == PROTECT_MAX_DEPTH ||
		    !(p->parts[p->depth] = decode_part(s + 1, n, &p->lens[p->depth]))) {
			protect_path_free(p);
			return -1;
		}
		p->depth++;
		s += n + 1;
	}
	return 0;
}

void protect_path_literal(protect_path *p, const char *const *parts, int depth, int rule, bool drop)
{
	memset(p, 0, sizeof(*p));
	p->rule = rule;
	p->drop = drop;
	p->literal = true;
	p->depth = depth;
	for (int i = 0; i < depth; i++) {
		p->parts[i] = xstrdup(parts[i]);
		p->lens[i] = strlen(parts[i]);
	}
}

void protect_path_free(protect_path *p)
{
	for (int i = 0; i < p->depth; i++)
		free(p->parts[i]);
	p->depth = 0;
}

protect_rw *protect_rw_new(void) { return xcalloc(1, sizeof(protect_rw)); }

void protect_rw_free(protect_rw *rw)
{
	if (!rw)
		return;
	free(rw->levels);
	strbuf_free(&rw->clear);
	free(rw);
}

/* Where a value's text starts and ends, quotes included. */
static const char *span_start(const json_span *v) { return v->kind == JSON_STRING ? v->ptr - 1 : v->ptr; }
static const char *span_end(const json_span *v)
{
	return v->ptr + v->len + (v->kind == JSON_STRING ? 1 : 0);
}

/*
 * True when part (of len n) takes the member key (objects) or the element at idx (arrays); a
 * literal part takes only the member of its name.
 */
static bool part_takes(const char *part, size_t n, bool literal, const json_span *key, size_t idx)
{
	if (!literal && n == 1 && part[0] == '*')
		return true;
	if (key) /* most keys have no escapes: compared in place, the length first */
		return key->escaped ? json_string_is(key, part, n)
				    : key->len == n && memcmp(key->ptr, part, n) == 0;
	if (literal)
		return false; /* a name takes no array element */
	if (n > 9 || strspn(part, "0123456789") != n || (n > 1 && part[0] == '0'))
		return false;
	return strtoul(part, NULL, 10) == idx;
}

/* Copies the input up to at, then drops what lies between at and to. */
static void skip_to(protect_rw *rw, const char *at, const char *to)
{
	strbuf_addn(rw->out, rw->copied, (size_t)(at - rw->copied));
	rw->copied = to;
	rw->changed = true;
}

/* Replaces one taken value by what the path's action writes; a null stays. */
static int replace(protect_rw *rw, const protect_path *p, const json_span *v)
{
	const char *clear = v->ptr;
	size_t n = v->len;

	if (v->kind == JSON_NULL)
		return 0;
	if (v->kind == JSON_STRING && v->escaped) {
		strbuf_reset(&rw->clear);
		long k = json_unescape(v, strbuf_room(&rw->clear, v->len));
		if (k < 0)
			return *rw->why = "a protected field holds an invalid escape", -1;
		clear = rw->clear.s;
		n = (size_t)k;
	}
	skip_to(rw, span_start(v), span_end(v));
	return rw->fn(rw->ctx, p, clear, n, v->kind == JSON_STRING, rw->out, rw->why);
}

/* The state of a run of dropped members or elements: removed with the commas between them. */
typedef struct {
	const char *start;     /* the first dropped item's start; NULL: no run */
	const char *prev_end;  /* the end of the item before the run; NULL: the run is first */
	const char *last_end;  /* the end of the run's last item */
} drop_run;

/* Ends a run before the next kept item (from its first item to that item's start). */
static void run_close(protect_rw *rw, drop_run *run, const char *next_start)
{
	if (!run->start)
		return;
	skip_to(rw, run->start, next_start);
	run->start = NULL;
}

/* Ends a run at the close of its object or array (with the comma after the item before it). */
static void run_close_last(protect_rw *rw, drop_run *run)
{
	if (!run->start)
		return;
	skip_to(rw, run->prev_end ? run->prev_end : run->start, run->last_end);
	run->start = NULL;
}

static int walk(protect_rw *rw, const json_span *v, const protect_path **act, size_t n, int depth);

/*
 * One member or element (key NULL in arrays): the paths among act that take it; the first
 * rule's path that ends here replaces or drops it, else the ones going deeper walk into it.
 */
static int visit(protect_rw *rw, const json_span *key, const json_span *val, size_t idx,
		 const protect_path **act, size_t n, int depth, drop_run *run, const char *prev_end)
{
	const protect_path **sub = rw->levels + (size_t)(depth + 1) * rw->cap, *hit = NULL;
	const char *start = key ? key->ptr - 1 : span_start(val);
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		if (!part_takes(act[i]->parts[depth], act[i]->lens[depth], act[i]->literal, key, idx))
			continue;
		if (act[i]->depth == depth + 1) {
			if (!hit || act[i]->rule < hit->rule)
				hit = act[i];
		} else {
			sub[m++] = act[i];
		}
	}
	if (hit && hit->drop) {
		if (!run->start) {
			run->start = start;
			run->prev_end = prev_end;
		}
		run->last_end = span_end(val);
		return 0;
	}
	run_close(rw, run, start);
	if (hit)
		return replace(rw, hit, val);
	if (m > 0 && (val->kind == JSON_OBJECT || val->kind == JSON_ARRAY))
		return walk(rw, val, sub, m, depth + 1);
	return 0;
}

/* A bit per key length the paths' parts at depth have (63: that long or longer); all bits for "*". */
static uint64_t part_lengths(const protect_path **act, size_t n, int depth)
{
	uint64_t bits = 0;

	for (size_t i = 0; i < n; i++) {
		size_t len = act[i]->lens[depth];
		if (len == 1 && act[i]->parts[depth][0] == '*')
			return UINT64_MAX;
		bits |= (uint64_t)1 << (len < 63 ? len : 63);
	}
	return bits;
}

/* True when no part can take the member key: an unescaped key of a length no part has. */
static bool no_part_takes(uint64_t lengths, const json_span *key)
{
	return !key->escaped && !(lengths & ((uint64_t)1 << (key->len < 63 ? key->len : 63)));
}

/* Iterates an object or array the cursor has entered, with the paths (act) reaching into it. */
static int walk_entered(protect_rw *rw, json_cursor *c, bool obj, const protect_path **act,
			size_t n, int depth)
{
	json_span key, val;
	drop_run run = {0};
	const char *prev_end = NULL;
	uint64_t lengths = obj ? part_lengths(act, n, depth) : UINT64_MAX;
	int rc;

	for (size_t idx = 0;; idx++) {
		rc = obj ? json_object_next(c, &key, &val) : json_array_next(c, &val);
		if (rc <= 0)
			break;
		/* Most members are taken by no path: only the length of their key is looked at. */
		if (obj && no_part_takes(lengths, &key))
			run_close(rw, &run, key.ptr - 1);
		else if (visit(rw, obj ? &key : NULL, &val, idx, act, n, depth, &run, prev_end) < 0)
			return -1;
		prev_end = span_end(&val);
	}
	if (rc < 0)
		return *rw->why = NOT_JSON, -1;
	run_close_last(rw, &run);
	return 0;
}

/* Walks an object or array value (scanned already) with the paths reaching into it. */
static int walk(protect_rw *rw, const json_span *v, const protect_path **act, size_t n, int depth)
{
	json_cursor c;
	bool obj = v->kind == JSON_OBJECT;

	if ((obj ? json_object_open(&c, v) : json_array_open(&c, v)) < 0)
		return *rw->why = NOT_JSON, -1;
	return walk_entered(rw, &c, obj, act, n, depth);
}

/* The first byte of the text that is not JSON whitespace ('\0' when none). */
static char first_char(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
			return s[i];
	return '\0';
}

int protect_rewrite(protect_rw *rw, const char *json, size_t len, const protect_path *const *paths,
		    size_t n_paths, protect_value_fn fn, void *ctx, strbuf *out, const char **why)
{
	json_cursor c;
	json_span root;
	char first = first_char(json, len);
	bool obj = first == '{';

	strbuf_reset(out);
	json_cursor_init(&c, json, len);
	/* A scalar (or nothing to look for): only checked to be JSON. */
	if (n_paths == 0 || (first != '{' && first != '[')) {
		if (json_read_value(&c, &root) < 0 || !json_at_end(&c))
			return *why = NOT_JSON, -1;
		return 0;
	}
	if (n_paths > rw->cap) {
		rw->cap = n_paths;
		free(rw->levels);
		rw->levels = xcalloc((PROTECT_MAX_DEPTH + 1) * rw->cap, sizeof(*rw->levels));
	}
	memcpy(rw->levels, paths, n_paths * sizeof(*paths));
	rw->copied = json;
	rw->out = out;
	rw->fn = fn;
	rw->ctx = ctx;
	rw->why = why;
	rw->changed = false;
	/* The walk scans the text once: it is checked to be JSON as it goes. */
	if ((obj ? json_enter_object(&c) : json_enter_array(&c)) < 0)
		return *why = NOT_JSON, -1;
	if (walk_entered(rw, &c, obj, rw->levels, n_paths, 0) < 0)
		return -1; /* why: NOT_JSON, or what fn said */
	if (!json_at_end(&c))
		return *why = NOT_JSON, -1;
	if (!rw->changed)
		return 0;
	strbuf_addn(out, rw->copied, (size_t)(json + len - rw->copied));
	return 1;
}
