/* contract.c: the contracts of event types: Avro schema files <event_type>.avsc and <event_type>.v<N>.avsc, compiled. */
#include "contract.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "xalloc.h"

#define AVRO_SUFFIX ".avsc"
#define MAX_SCHEMA_FILE (64L << 20) /* a schema file is text: anything larger is a mistake */

struct contract_set {
	contract *items;
	size_t n;
	char *prefix; /* the registry's subjects <prefix><event_type>; NULL: files of a directory */
};

/*
 * The whole content of a regular file (NUL-terminated); NULL with why set when it cannot be read
 * (a directory named X.avsc, a device, a file too large to be a schema).
 */
static char *read_file(const char *path, size_t *len, const char **why)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	char *buf = NULL;

	*why = "cannot read it";
	if (!f) {
		*why = strerror(errno);
		return NULL;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
		*why = "not a regular file";
	else if (st.st_size > MAX_SCHEMA_FILE)
		*why = "larger than 64 MiB: not a schema";
	else {
		buf = xmalloc((size_t)st.st_size + 1);
		*len = fread(buf, 1, (size_t)st.st_size, f);
		buf[*len] = '\0';
	}
	fclose(f);
	return buf;
}

/*
 * A positive decimal integer up to INT_MAX (the kit's integer column) without sign or leading
 * zero in t[0..len); 0 when it is not one.
 */
static int parse_version(const char *t, size_t len)
{
	long long v = 0;

	if (len == 0 || len > 10 || t[0] == '0')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (t[i] < '0' || t[i] > '9')
			return 0;
		v = v * 10 + (t[i] - '0');
	}
	return v > INT_MAX ? 0 : (int)v;
}

/*
 * Splits a file name (without .avsc) into event type and version: "X.v3" is X at version 3,
 * anything else is an event type without version. The event type's length goes to *type_len.
 */
static int name_version(const char *name, size_t len, size_t *type_len)
{
	const char *dot = NULL;

	for (size_t i = len; i-- > 0;)
		if (name[i] == '.') {
			dot = name + i;
			break;
		}
	int v = dot && dot > name && dot[1] == 'v' ? parse_version(dot + 2, len - (size_t)(dot - name) - 2) : 0;
	*type_len = v ? (size_t)(dot - name) : len;
	return v;
}

/*
 * Compiles one schema text into the set as the contract of type at version; name is what
 * messages call it later, where what an error now names (a file's path, a subject's version).
 */
static int add_contract(contract_set *s, const char *text, size_t len, const char *type,
			size_t type_len, int version, const char *name, const char *where, char *err,
			size_t errlen)
{
	char msg[400];
	avjson_codec *c = avjson_new(text, len, msg, sizeof(msg));

	if (!c) {
		snprintf(err, errlen, "%s: %s", where, msg);
		return -1;
	}
	s->items = xrealloc(s->items, sizeof(*s->items) * (s->n + 1));
	contract *k = &s->items[s->n++];
	k->version = version;
	k->event_type = xstrndup(type, type_len);
	k->file = xstrdup(name);
	k->codec = c;
	return 0;
}

/* Compiles one schema file into the set; -1 with err naming the file. */
static int load_one(contract_set *s, const char *dir, const char *file, char *err, size_t errlen)
{
	char path[4096];
	size_t len = 0, type_len, nlen = strlen(file) - strlen(AVRO_SUFFIX);
	const char *why;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	char *text = read_file(path, &len, &why);
	if (!text) {
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	int version = name_version(file, nlen, &type_len);
	int rc = add_contract(s, text, len, file, type_len, version, file, path, err, errlen);
	free(text);
	return rc;
}

/* True when a directory entry's name is <something>.avsc. */
static int is_schema_file(const struct dirent *e)
{
	size_t n = strlen(e->d_name), s = strlen(AVRO_SUFFIX);
	return n > s && strcmp(e->d_name + n - s, AVRO_SUFFIX) == 0;
}

contract_set *contract_set_load(const char *dir, char *err, size_t errlen)
{
	contract_set *s = xcalloc(1, sizeof(*s));
	struct dirent **names;
	int n, rc = 0;

	if (!dir) /* no directory: no contracts (captured tables derive their schemas) */
		return s;
	n = scandir(dir, &names, is_schema_file, alphasort);

	if (n < 0) {
		snprintf(err, errlen, "schema_registry.schema_dir: cannot read the directory %s", dir);
		free(s);
		return NULL;
	}
	for (int i = 0; i < n; i++) {
		if (rc == 0)
			rc = load_one(s, dir, names[i]->d_name, err, errlen);
		free(names[i]);
	}
	free(names);
	if (rc == 0)
		return s;
	contract_set_free(s);
	return NULL;
}

/* Ascending order for qsort. */
static int by_version(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/*
 * One subject's versions into the set as versions of type, and the highest one fetched once
 * more as the unversioned contract (a version deleted meanwhile is as if never there).
 */
static registry_result fetch_subject(contract_set *s, registry *reg, const char *subject,
				     const char *type, char *err, size_t errlen)
{
	int *versions, latest_v = 0;
	size_t n;
	char *latest = NULL, name[REGISTRY_SUBJECT_MAX + 64];
	registry_result rr = registry_versions(reg, subject, &versions, &n, err, errlen);

	if (n)
		qsort(versions, n, sizeof(*versions), by_version);
	for (size_t i = 0; rr == REGISTRY_OK && i < n; i++) {
		char *text;
		if ((rr = registry_version_schema(reg, subject, versions[i], &text, err, errlen)) !=
			    REGISTRY_OK || !text)
			continue;
		snprintf(name, sizeof(name), "subject %s version %d", subject, versions[i]);
		if (add_contract(s, text, strlen(text), type, strlen(type), versions[i], name, name,
				 err, errlen) < 0)
			rr = REGISTRY_REFUSED;
		free(latest);
		latest = text, latest_v = versions[i];
	}
	snprintf(name, sizeof(name), "subject %s version %d", subject, latest_v);
	if (rr == REGISTRY_OK && latest &&
	    add_contract(s, latest, strlen(latest), type, strlen(type), 0, name, name, err, errlen) < 0)
		rr = REGISTRY_REFUSED;
	free(latest);
	free(versions);
	return rr;
}

registry_result contract_set_fetch(registry *reg, const char *prefix, contract_set **out, char *err,
				   size_t errlen)
{
	char **subjects;
	size_t n, plen = strlen(prefix);
	registry_result rr = registry_subjects(reg, &subjects, &n, err, errlen);
	contract_set *s = xcalloc(1, sizeof(*s));

	s->prefix = xstrdup(prefix);
	for (size_t i = 0; i < n; i++) {
		if (rr == REGISTRY_OK && strncmp(subjects[i], prefix, plen) == 0 && subjects[i][plen])
			rr = fetch_subject(s, reg, subjects[i], subjects[i] + plen, err, errlen);
		free(subjects[i]);
	}
	free(subjects);
	if (rr == REGISTRY_OK && s->n == 0) {
		snprintf(err, errlen, "no subject of the schema registry starts with \"%s\" "
			 "(schema_registry.contract_prefix): no contract to check events by", prefix);
		rr = REGISTRY_REFUSED;
	}
	*out = rr == REGISTRY_OK ? s : NULL;
	if (rr != REGISTRY_OK)
		contract_set_free(s);
	return rr;
}

registry_result contract_set_ensure(contract_set **set, registry *reg, const char *prefix,
				    char *why, size_t whylen)
{
	contract_set *s;
	size_t subjects = 0;

	if (*set)
		return REGISTRY_OK;
	registry_result rr = contract_set_fetch(reg, prefix, &s, why, whylen);
	if (rr != REGISTRY_OK)
		return rr;
	for (size_t i = 0; i < s->n; i++)
		subjects += s->items[i].version == 0; /* one unversioned contract per subject */
	log_info("contracts: %zu versions of %zu subjects %s<event_type> from the schema registry",
		 s->n - subjects, subjects, prefix);
	*set = s;
	return REGISTRY_OK;
}

contract_set *contract_set_load_cfg(const relay_config *cfg, char *err, size_t errlen)
{
	char msg[4600];
	contract_set *s = contract_set_load(cfg->schema_dir, msg, sizeof(msg));

	if (!s)
		snprintf(err, errlen, "%s:%d: %s", cfg->path, cfg->schema_dir_line, msg);
	return s;
}

void contract_set_free(contract_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++) {
		free(s->items[i].event_type);
		free(s->items[i].file);
		avjson_free(s->items[i].codec);
	}
	free(s->items);
	free(s->prefix);
	free(s);
}

size_t contract_set_count(const contract_set *s) { return s ? s->n : 0; }

const contract *contract_at(const contract_set *s, size_t i) { return &s->items[i]; }

/* The header of that name, or NULL. */
static const route_header *header_of(const route_msg *m, const char *name)
{
	size_t n = strlen(name);

	for (size_t h = 0; h < m->n_headers; h++)
		if (m->headers[h].name_len == n && memcmp(m->headers[h].name, name, n) == 0)
			return &m->headers[h];
	return NULL;
}

/* The contract of this type and version, or -1. */
static long lookup(const contract_set *s, const char *type, size_t len, int version)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->items[i].version == version && strlen(s->items[i].event_type) == len &&
		    memcmp(s->items[i].event_type, type, len) == 0)
			return (long)i;
	return -1;
}

long contract_find(const contract_set *s, const route_msg *m, char *why, size_t whylen)
{
	const route_header *t = header_of(m, "event_type");
	int version = 0;

	if (!t || !t->value) {
		snprintf(why, whylen, "an event with a contract needs an event_type (the schema's name)");
		return -1;
	}
	int n = (int)(t->value_len > 100 ? 100 : t->value_len);
	if (m->schema_version && !(version = parse_version(m->schema_version, m->schema_version_len))) {
		snprintf(why, whylen, "schema_version %.*s of event type \"%.*s\" is not a positive "
			 "integer", (int)(m->schema_version_len > 40 ? 40 : m->schema_version_len),
			 m->schema_version, n, t->value);
		return -1;
	}
	long i = lookup(s, t->value, t->value_len, version);
	if (i >= 0)
		return i;
	if (s->prefix && version)
		snprintf(why, whylen, "no Avro schema for event type \"%.*s\" version %d (no version %d "
			 "of subject %s%.*s in the schema registry)", n, t->value, version, version,
			 s->prefix, n, t->value);
	else if (s->prefix)
		snprintf(why, whylen, "no Avro schema for event type \"%.*s\" (no subject %s%.*s in the "
			 "schema registry)", n, t->value, s->prefix, n, t->value);
	else if (version)
		snprintf(why, whylen, "no Avro schema for event type \"%.*s\" version %d (no %.*s.v%d"
			 AVRO_SUFFIX " in schema_registry.schema_dir)", n, t->value, version, n, t->value,
			 version);
	else
		snprintf(why, whylen, "no Avro schema for event type \"%.*s\" (no %.*s" AVRO_SUFFIX
			 " in schema_registry.schema_dir)", n, t->value, n, t->value);
	return -1;
}
