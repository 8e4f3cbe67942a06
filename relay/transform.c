/* transform.c: the transform stage: changes a built record's fields before it is encoded. */
#include "transform.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "headers.h"
#include "json_out.h"
#include "protect.h"
#include "protect_action.h"
#include "xalloc.h"

/* The credentials the keys come from (docs/privacy.md). */
#define HASH_CREDENTIAL "protect-hash-key"
#define ENCRYPT_CREDENTIAL "protect-encrypt-key"

/* Compiled paths of one kind, each naming its rule. */
typedef struct {
	protect_path *p;
	size_t n;
} path_list;

struct transform {
	const relay_config *cfg;
	int n_rules;
	protect_kind *kinds;     /* each rule's action */
	bool *applies;           /* each rule, for the record at hand */
	bool any_fields;         /* some rule names payload fields */
	path_list fields;        /* the rules' fields: outbox payloads */
	path_list columns;       /* /after/c and /before/c: captured values */
	path_list key_columns;   /* /c: captured keys */
	const protect_path **sel; /* the paths that apply to the record at hand */
	unsigned char hash_key[PROTECT_KEY_BYTES], enc_key[PROTECT_KEY_BYTES]; /* wiped once keyed */
	bool has_hash, has_enc;
	protect_crypto *crypto;  /* the keyed hash and cipher contexts */
	protect_rw *rw;
	strbuf value, key, mask, name; /* the stage's outputs and scratch */
	header_list headers;     /* a dead letter's headers, dlq_protected added */
};

/* Adds one path to a list (the lists are sized when the rules are counted). */
static protect_path *path_add(path_list *l) { return &l->p[l->n++]; }

/*
 * Compiles one rule's fields and columns into the stage's path lists: -1 with err for a path
 * the parser refuses (config.c refuses it first, with the same parser: a path skipped here
 * would leave its field in clear, so it stops the start instead).
 */
static int compile_rule(transform *t, const protect_config *pc, int rule, char *err, size_t errlen)
{
	bool drop = t->kinds[rule] == PROTECT_DROP;

	for (int i = 0; i < pc->n_fields; i++)
		if (protect_path_parse(pc->fields[i], rule, drop, path_add(&t->fields)) < 0) {
			t->fields.n--;
			snprintf(err, errlen, "%s:%d: protect[%d].fields: '%s' is not a JSON path",
				 t->cfg->path, pc->line, rule, pc->fields[i]);
			return -1;
		}
	for (int i = 0; i < pc->n_columns; i++) {
		const char *after[] = {"after", pc->columns[i]}, *before[] = {"before", pc->columns[i]};
		protect_path_literal(path_add(&t->columns), after, 2, rule, drop);
		protect_path_literal(path_add(&t->columns), before, 2, rule, drop);
		/* In a key, a protected column is always hashed (protect_value): never dropped. */
		protect_path_literal(path_add(&t->key_columns), after + 1, 1, rule, false);
	}
	t->any_fields |= pc->n_fields > 0;
	return 0;
}

/* Reads one key credential into key: 1 when read, 0 when absent, -1 with err when bad. */
static int read_key(const relay_config *cfg, const char *name, unsigned char *key, char *err,
		    size_t errlen)
{
	char why[160];
	char *text = config_read_credential(name);
	int rc = 1;

	if (!text)
		return 0;
	if (protect_key_parse(text, key, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s:%d: protect: the key in the systemd credential %s %s",
			 cfg->path, cfg->protects[0].line, name, why);
		rc = -1;
	}
	explicit_bzero(text, strlen(text));
	free(text);
	return rc;
}

/* The first rule with action kind, or -1. */
static int rule_with(const transform *t, protect_kind kind)
{
	for (int i = 0; i < t->n_rules; i++)
		if (t->kinds[i] == kind)
			return i;
	return -1;
}

/* Reads the keys the rules need: a missing or bad one stops the relay at start. */
static int load_keys(transform *t, char *err, size_t errlen)
{
	int h = rule_with(t, PROTECT_HASH), e = rule_with(t, PROTECT_ENCRYPT), rc;

	if ((rc = read_key(t->cfg, HASH_CREDENTIAL, t->hash_key, err, errlen)) < 0)
		return -1;
	t->has_hash = rc == 1;
	if ((rc = read_key(t->cfg, ENCRYPT_CREDENTIAL, t->enc_key, err, errlen)) < 0)
		return -1;
	t->has_enc = rc == 1;
	for (int k = 0; k < 2; k++) {
		int rule = k == 0 ? h : e;
		if (rule < 0 || (k == 0 ? t->has_hash : t->has_enc))
			continue;
		snprintf(err, errlen, "%s:%d: protect[%d] %s with the key of the systemd credential "
			 "%s, which is missing (no $CREDENTIALS_DIRECTORY/%s: 64 hex digits, e.g. "
			 "from openssl rand -hex 32)", t->cfg->path, t->cfg->protects[rule].line, rule,
			 k == 0 ? "hashes" : "encrypts", k == 0 ? HASH_CREDENTIAL : ENCRYPT_CREDENTIAL,
			 k == 0 ? HASH_CREDENTIAL : ENCRYPT_CREDENTIAL);
		return -1;
	}
	if (t->cfg->dead_letter && !t->has_enc) {
		snprintf(err, errlen, "%s:%d: protect rules and a dead-letter topic need the encryption "
			 "key: dead letters carry the whole row, which goes out encrypted: add the "
			 "systemd credential %s (64 hex digits, e.g. from openssl rand -hex 32)",
			 t->cfg->path, t->cfg->protects[0].line, ENCRYPT_CREDENTIAL);
		return -1;
	}
	return 0;
}

transform *transform_new(const relay_config *cfg, char *err, size_t errlen)
{
	transform *t = xcalloc(1, sizeof(*t));
	size_t nf = 0, nc = 0;

	t->cfg = cfg;
	t->n_rules = cfg->n_protects;
	if (t->n_rules == 0)
		return t;
	t->kinds = xcalloc((size_t)t->n_rules, sizeof(*t->kinds));
	t->applies = xcalloc((size_t)t->n_rules, sizeof(*t->applies));
	for (int i = 0; i < t->n_rules; i++) {
		int k = protect_kind_of(cfg->protects[i].action);
		t->kinds[i] = k < 0 ? PROTECT_DROP : (protect_kind)k;
		nf += (size_t)cfg->protects[i].n_fields;
		nc += (size_t)cfg->protects[i].n_columns;
	}
	t->fields.p = xcalloc(nf + 1, sizeof(protect_path));
	t->columns.p = xcalloc(2 * nc + 1, sizeof(protect_path));
	t->key_columns.p = xcalloc(nc + 1, sizeof(protect_path));
	t->sel = xcalloc(nf + 2 * nc + 1, sizeof(*t->sel));
	t->rw = protect_rw_new();
	for (int i = 0; i < t->n_rules; i++)
		if (compile_rule(t, &cfg->protects[i], i, err, errlen) < 0) {
			transform_free(t);
			return NULL;
		}
	if (load_keys(t, err, errlen) < 0) {
		transform_free(t);
		return NULL;
	}
	t->crypto = protect_crypto_new(t->has_hash ? t->hash_key : NULL, t->has_enc ? t->enc_key : NULL);
	explicit_bzero(t->hash_key, sizeof(t->hash_key));
	explicit_bzero(t->enc_key, sizeof(t->enc_key));
	if (!t->crypto) {
		snprintf(err, errlen, "cannot set up the protect rules' keyed contexts (out of memory, or "
			 "OpenSSL has no AES-256-GCM)");
		transform_free(t);
		return NULL;
	}
	return t;
}

bool transform_can_hash(const transform *t) { return t->has_hash; }

bool transform_can_seal(const transform *t) { return t->has_enc; }

int transform_seal(transform *t, const char *text, size_t n, strbuf *out)
{
	return t->has_enc ? protect_encrypt(t->crypto, out, t->cfg->protect_key_id, text, n) : -1;
}

int transform_unseal(transform *t, const char *text, size_t n, strbuf *out)
{
	return t->has_enc ? protect_crypto_decrypt(t->crypto, out, text, n) : -1;
}

/* Frees one path list. */
static void paths_free(path_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		protect_path_free(&l->p[i]);
	free(l->p);
}

void transform_free(transform *t)
{
	if (!t)
		return;
	explicit_bzero(t->hash_key, sizeof(t->hash_key));
	explicit_bzero(t->enc_key, sizeof(t->enc_key));
	protect_crypto_free(t->crypto);
	paths_free(&t->fields);
	paths_free(&t->columns);
	paths_free(&t->key_columns);
	free(t->sel);
	free(t->kinds);
	free(t->applies);
	protect_rw_free(t->rw);
	strbuf_free(&t->value);
	strbuf_free(&t->key);
	strbuf_free(&t->mask);
	strbuf_free(&t->name);
	header_list_free(&t->headers);
	free(t);
}

/* True when one of the glob patterns takes name ("*" and plain names without fnmatch's cost). */
static bool any_match(char *const *patterns, int n, const char *name)
{
	for (int i = 0; i < n; i++) {
		const char *p = patterns[i];
		if ((p[0] == '*' && p[1] == '\0') ||
		    (strpbrk(p, "*?[\\") ? fnmatch(p, name, 0) == 0 : strcmp(p, name) == 0))
			return true;
	}
	return false;
}

/* Marks the rules that apply: by event type (fields: outbox) or by table (columns: captured). */
static bool mark_rules(transform *t, const char *name, bool by_event_type)
{
	bool any = false;

	for (int i = 0; i < t->n_rules; i++) {
		const protect_config *pc = &t->cfg->protects[i];
		t->applies[i] = by_event_type
					? pc->n_fields > 0 && any_match(pc->event_types, pc->n_event_types, name)
					: pc->n_columns > 0 && any_match(pc->tables, pc->n_tables, name);
		any |= t->applies[i];
	}
	return any;
}

/* The paths of a list whose rules apply, into t->sel. */
static size_t select_paths(transform *t, const path_list *l)
{
	size_t n = 0;

	for (size_t i = 0; i < l->n; i++)
		if (t->applies[l->p[i].rule])
			t->sel[n++] = &l->p[i];
	return n;
}

/* True when no byte of s[0..n) needs a JSON escape (json_out_escape would pass them all). */
static bool plain_json(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch < 0x20 || ch == '"' || ch == '\\')
			return false;
	}
	return true;
}

/*
 * Appends a string masked (protect_mask) as a JSON string. Masked in place after the quote;
 * only when the kept tail holds a byte to escape is it written again through json_out_string.
 */
static void mask_string(transform *t, strbuf *out, const char *clear, size_t len, int keep_last)
{
	size_t start = out->len;

	strbuf_addc(out, '"');
	protect_mask(out, clear, len, keep_last);
	if (plain_json(out->s + start + 1, out->len - start - 1)) {
		strbuf_addc(out, '"');
		return;
	}
	strbuf_reset(&t->mask);
	strbuf_addn(&t->mask, out->s + start + 1, out->len - start - 1);
	strbuf_setlen(out, start);
	json_out_string(out, t->mask.s, t->mask.len);
}

/* Writes the JSON value standing for a protected one (protect.h's protect_value_fn). */
static int protect_value(void *ctx, const protect_path *p, const char *clear, size_t len,
			 bool is_string, strbuf *out, const char **why)
{
	transform *t = ctx;
	bool in_key = p >= t->key_columns.p && p < t->key_columns.p + t->key_columns.n;

	/* A record key stays deterministic and unique: its protected columns are always hashed. */
	switch (in_key ? PROTECT_HASH : t->kinds[p->rule]) {
	case PROTECT_MASK:
		/* Only a string's tail is kept: a number's or an object's text is masked whole. */
		if (!is_string) {
			strbuf_add(out, "\"****\"");
			return 0;
		}
		mask_string(t, out, clear, len, t->cfg->protects[p->rule].keep_last);
		return 0;
	case PROTECT_HASH:
		if (!t->has_hash)
			return *why = "a protected key column needs the hash key (protect-hash-key)", -1;
		strbuf_addc(out, '"');
		protect_hash(t->crypto, out, clear, len);
		strbuf_addc(out, '"');
		return 0;
	case PROTECT_ENCRYPT:
		strbuf_addc(out, '"');
		if (protect_encrypt(t->crypto, out, t->cfg->protect_key_id, clear, len) < 0)
			return *why = "encrypting a protected field failed (OpenSSL)", -1;
		strbuf_addc(out, '"');
		return 0;
	case PROTECT_DROP:
		break;
	}
	return 0;
}

/* Rewrites one text (key or value) with the selected paths; a change points it at out. */
static int rewrite(transform *t, const char **text, size_t *len, size_t n_paths, strbuf *out,
		   const char **why)
{
	int rc;

	if (!*text || n_paths == 0)
		return 0;
	rc = protect_rewrite(t->rw, *text, *len, t->sel, n_paths, protect_value, t, out, why);
	if (rc == 1) {
		*text = out->s;
		*len = out->len;
	}
	return rc < 0 ? -1 : 0;
}

/* The record's event_type header as a string in t->name ("" when it has none). */
static const char *event_type_of(transform *t, const route_msg *m)
{
	strbuf_reset(&t->name);
	strbuf_addn(&t->name, "", 0);
	for (size_t i = 0; i < m->n_headers; i++) {
		const route_header *h = &m->headers[i];
		if (h->name_len == 10 && memcmp(h->name, "event_type", 10) == 0 && h->value) {
			strbuf_addn(&t->name, h->value, h->value_len);
			break;
		}
	}
	return t->name.s;
}

int transform_apply(transform *t, record *rec, const char **why)
{
	route_msg *m = rec->msg;

	if (t->n_rules == 0)
		return 0;
	if (rec->kind == RECORD_OUTBOX) {
		if (!t->any_fields || !mark_rules(t, event_type_of(t, m), true))
			return 0;
		return rewrite(t, &m->value, &m->value_len, select_paths(t, &t->fields), &t->value, why);
	}
	if (!mark_rules(t, rec->source, false))
		return 0;
	if (rewrite(t, &m->value, &m->value_len, select_paths(t, &t->columns), &t->value, why) < 0)
		return -1;
	return rewrite(t, &m->key, &m->key_len, select_paths(t, &t->key_columns), &t->key, why);
}

/* True when p points into the buffer b (a key this stage wrote). */
static bool in_buffer(const strbuf *b, const char *p)
{
	return b->s && p >= b->s && p < b->s + b->cap;
}

/* The dead letter's headers with one added (a copy in the stage's own array). */
static void add_protected_header(transform *t, route_msg *m, const char *name, const char *how)
{
	header_list_adopt(&t->headers, m, 1);
	header_list_add(&t->headers, m, name, how);
}

/* True when source is a captured table and not an outbox source (whose payloads fields take). */
static bool captured_only(const relay_config *cfg, const char *source)
{
	const char *dot = strchr(source, '.');
	char schema[256];

	for (int i = 0; i < cfg->n_sources; i++)
		if (strcmp(cfg->sources[i].table, source) == 0)
			return false;
	if (!dot || (size_t)(dot - source) >= sizeof(schema))
		return false;
	memcpy(schema, source, (size_t)(dot - source));
	schema[dot - source] = '\0';
	return config_capture_for(cfg, schema, dot + 1) != NULL;
}

void transform_dead_letter(transform *t, const char *source, route_msg *m)
{
	const char *why;
	bool columns = t->n_rules > 0 && mark_rules(t, source, false);

	/* Outbox sources: the row's event type is not known here, so any fields rule counts. */
	if (!columns && (!t->any_fields || captured_only(t->cfg, source)))
		return;
	if (columns && m->key && !in_buffer(&t->key, m->key) &&
	    rewrite(t, &m->key, &m->key_len, select_paths(t, &t->key_columns), &t->key, &why) < 0) {
		m->key = NULL; /* not protected: not published */
		m->key_len = 0;
		add_protected_header(t, m, "dlq_key_withheld", "true");
	}
	strbuf_reset(&t->value);
	if (m->value && t->has_enc &&
	    protect_encrypt(t->crypto, &t->value, t->cfg->protect_key_id, m->value, m->value_len) == 0) {
		m->value = t->value.s;
		m->value_len = t->value.len;
		add_protected_header(t, m, "dlq_protected", "encrypted");
		return;
	}
	/* Not reached with a dead-letter topic (transform_new requires the key), but for OpenSSL failing. */
	m->value = NULL;
	m->value_len = 0;
	add_protected_header(t, m, "dlq_protected", "withheld");
}
