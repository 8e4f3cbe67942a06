/* avjson_schema.c: an Avro schema's JSON compiled (jansson) into the nodes avjson.c converts by. */
#include "avjson_schema.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* ---- compiling the schema's JSON ---- */

/* While compiling: the codec (owner of the nodes) and where a message goes. */
typedef struct {
	avjson_schema *c;
	char *err;
	size_t errlen;
	int depth;
} compile_ctx;

/* A node owned by the codec (freed with it). */
static avjson_node *new_node(avjson_schema *c, avro_type_t type)
{
	avjson_node *n = xcalloc(1, sizeof(*n));
	n->type = type;
	n->next = c->all;
	c->all = n;
	return n;
}

/* The primitive type of a name, or -1 for a name that is not primitive. */
static int primitive_type(const char *name)
{
	static const struct {
		const char *name;
		avro_type_t type;
	} prims[] = {{"null", AVRO_NULL},   {"boolean", AVRO_BOOLEAN}, {"int", AVRO_INT32},
		     {"long", AVRO_INT64},  {"float", AVRO_FLOAT},     {"double", AVRO_DOUBLE},
		     {"bytes", AVRO_BYTES}, {"string", AVRO_STRING}};
	for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++)
		if (strcmp(prims[i].name, name) == 0)
			return (int)prims[i].type;
	return -1;
}

/* A named type already defined (fullname, or name within the namespace ns); NULL if none. */
static avjson_node *find_named(const avjson_schema *c, const char *name, const char *ns)
{
	char full[512];

	snprintf(full, sizeof(full), "%s%s%s", ns, ns[0] ? "." : "", name);
	for (avjson_node *n = c->all; n; n = n->next)
		if (n->fullname && (strcmp(n->fullname, full) == 0 || strcmp(n->fullname, name) == 0))
			return n;
	return NULL;
}

static avjson_node *compile(compile_ctx *x, const json_t *j, const char *ns);

/* A message about the schema; always NULL (for returning). */
static avjson_node *compile_fail(compile_ctx *x, const char *what)
{
	snprintf(x->err, x->errlen, "%s", what);
	return NULL;
}

/* A named type's fullname (Avro's rules: a dotted name is full; else namespace, else ns). */
static char *named_fullname(const json_t *j, const char *ns, char *nsbuf, size_t nslen)
{
	const char *name = json_string_value(json_object_get(j, "name"));
	const char *space = json_string_value(json_object_get(j, "namespace"));
	char full[512];

	if (!name)
		return NULL;
	if (strchr(name, '.'))
		snprintf(full, sizeof(full), "%s", name);
	else
		snprintf(full, sizeof(full), "%s%s%s", space ? space : ns,
			 (space ? space : ns)[0] ? "." : "", name);
	const char *dot = strrchr(full, '.');
	snprintf(nsbuf, nslen, "%.*s", dot ? (int)(dot - full) : 0, full);
	return xstrdup(full);
}

/*
 * True when two fields of the record have one name (libavro accepts such a schema): a guess of
 * the field a key is could then name the other one than the search does (the first after the
 * previous member's, else the first).
 */
static bool has_twin_names(const avjson_node *n)
{
	for (size_t i = 0; i < n->n; i++)
		for (size_t k = i + 1; k < n->n; k++)
			if (n->name_lens[i] == n->name_lens[k] &&
			    memcmp(n->names[i], n->names[k], n->name_lens[i]) == 0)
				return true;
	return false;
}

/* A record's fields, each compiled within the record's namespace. */
static avjson_node *compile_record(compile_ctx *x, const json_t *j, const char *ns)
{
	char inner[512];
	const json_t *fields = json_object_get(j, "fields");
	avjson_node *n = new_node(x->c, AVRO_RECORD);

	n->fullname = named_fullname(j, ns, inner, sizeof(inner));
	if (!n->fullname || !json_is_array(fields))
		return compile_fail(x, "a record needs a name and a fields array");
	n->n = json_array_size(fields);
	n->kids = xcalloc(n->n + 1, sizeof(*n->kids));
	n->names = xcalloc(n->n + 1, sizeof(*n->names));
	n->name_lens = xcalloc(n->n + 1, sizeof(*n->name_lens));
	n->guess = xcalloc(n->n + 1, sizeof(*n->guess));
	for (size_t i = 0; i < n->n; i++) {
		const json_t *f = json_array_get(fields, i);
		const char *fname = json_string_value(json_object_get(f, "name"));
		if (!fname)
			return compile_fail(x, "a record field needs a name");
		n->names[i] = xstrdup(fname);
		n->name_lens[i] = strlen(fname);
		n->guess[i] = i; /* until a payload shows its order: the schema's */
		if (!(n->kids[i] = compile(x, json_object_get(f, "type"), inner)))
			return NULL;
	}
	if (has_twin_names(n)) { /* a key matches two fields: only the search picks as before */
		free(n->guess);
		n->guess = NULL;
	}
	return n;
}

/* decimal, date, timestamp-millis, timestamp-micros on the types Avro allows them on. */
static avjson_node *add_logical(compile_ctx *x, avjson_node *n, const json_t *j)
{
	const char *lt = json_string_value(json_object_get(j, "logicalType"));

	if (!lt)
		return n;
	if (strcmp(lt, "decimal") == 0 && (n->type == AVRO_BYTES || n->type == AVRO_FIXED)) {
		n->logical = AVJ_DECIMAL;
		n->precision = (long)json_integer_value(json_object_get(j, "precision"));
		n->scale = (long)json_integer_value(json_object_get(j, "scale"));
		if (n->precision < 1 || n->precision > 1000 || n->scale < 0 || n->scale > n->precision)
			return compile_fail(x, "a decimal needs 1 <= precision <= 1000 and "
					       "0 <= scale <= precision");
	} else if (strcmp(lt, "date") == 0 && n->type == AVRO_INT32) {
		n->logical = AVJ_DATE;
	} else if (strcmp(lt, "timestamp-millis") == 0 && n->type == AVRO_INT64) {
		n->logical = AVJ_TS_MILLIS;
	} else if (strcmp(lt, "timestamp-micros") == 0 && n->type == AVRO_INT64) {
		n->logical = AVJ_TS_MICROS;
	} /* other logical types (uuid, time-*): their underlying type as it is */
	return n;
}

/* A schema given as an object: a complex type, or a primitive with a logical type. */
static avjson_node *compile_object(compile_ctx *x, const json_t *j, const char *ns)
{
	const json_t *t = json_object_get(j, "type");
	const char *tn = json_string_value(t);
	char inner[512];
	avjson_node *n;

	if (!tn)
		return compile(x, t, ns);
	if (strcmp(tn, "record") == 0 || strcmp(tn, "error") == 0)
		return compile_record(x, j, ns);
	if (strcmp(tn, "enum") == 0 || strcmp(tn, "fixed") == 0) {
		n = new_node(x->c, tn[0] == 'e' ? AVRO_ENUM : AVRO_FIXED);
		n->fullname = named_fullname(j, ns, inner, sizeof(inner));
		n->size = (int64_t)json_integer_value(json_object_get(j, "size"));
		return n->fullname ? add_logical(x, n, j) : compile_fail(x, "a named type needs a name");
	}
	if (strcmp(tn, "array") == 0 || strcmp(tn, "map") == 0) {
		n = new_node(x->c, tn[0] == 'a' ? AVRO_ARRAY : AVRO_MAP);
		x->c->has_lists = true;
		n->n = 1;
		n->kids = xcalloc(2, sizeof(*n->kids));
		n->kids[0] = compile(x, json_object_get(j, tn[0] == 'a' ? "items" : "values"), ns);
		return n->kids[0] ? n : NULL;
	}
	n = compile(x, t, ns);
	if (n && primitive_type(tn) >= 0) { /* a fresh node: the logical type is its own */
		return add_logical(x, n, j);
	}
	return n;
}

/* Compiles one schema (a name, a union or an object) within namespace ns. */
static avjson_node *compile(compile_ctx *x, const json_t *j, const char *ns)
{
	avjson_node *n;

	if (++x->depth > 64) /* libavro refuses deeper nesting too; no runaway recursion here */
		return compile_fail(x, "the schema nests deeper than 64 levels");
	if (json_is_string(j)) {
		const char *name = json_string_value(j);
		int p = primitive_type(name);
		n = p >= 0 ? new_node(x->c, (avro_type_t)p) : find_named(x->c, name, ns);
		if (!n)
			compile_fail(x, "the schema names a type it does not define");
	} else if (json_is_array(j)) {
		n = new_node(x->c, AVRO_UNION);
		n->n = json_array_size(j);
		n->kids = xcalloc(n->n + 1, sizeof(*n->kids));
		for (size_t i = 0; i < n->n && n; i++)
			if (!(n->kids[i] = compile(x, json_array_get(j, i), ns)))
				n = NULL;
	} else if (json_is_object(j)) {
		n = compile_object(x, j, ns);
	} else {
		n = compile_fail(x, "a schema is a name, an array (union) or an object");
	}
	x->depth--;
	return n;
}

/* The record a value of n cannot be without: n itself, or a union's only branch; NULL when a
 * value can choose something else (another branch, an empty array or map) or is no record. */
static avjson_node *required_record(avjson_node *n)
{
	while (n && n->type == AVRO_UNION && n->n == 1)
		n = n->kids[0];
	return n && n->type == AVRO_RECORD ? n : NULL;
}

/* A record on the path from r that a value of r would have to contain again (visit 1 marks the
 * path), or NULL: such a value never ends, and libavro recurses on it until the stack runs out. */
static avjson_node *record_in_cycle(avjson_node *r)
{
	if (r->visit == 1)
		return r;
	if (r->visit == 2) /* checked before: ends */
		return NULL;
	r->visit = 1;
	for (size_t i = 0; i < r->n; i++) {
		avjson_node *k = required_record(r->kids[i]), *again = k ? record_in_cycle(k) : NULL;
		if (again)
			return again;
	}
	r->visit = 2;
	return NULL;
}

/* -1 with a message naming the record when some record must contain itself. */
static int check_records_end(avjson_schema *s, char *err, size_t errlen)
{
	for (avjson_node *n = s->all; n; n = n->next) {
		avjson_node *again = n->type == AVRO_RECORD ? record_in_cycle(n) : NULL;
		if (again) {
			snprintf(err, errlen, "record %s must contain itself: no value of it can end "
				 "(make a field on the way back to it nullable, [\"null\", ...])",
				 again->fullname);
			return -1;
		}
	}
	return 0;
}

int avjson_schema_compile(const char *json, size_t len, avjson_schema *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	compile_ctx x = {out, err, errlen, 0};

	memset(out, 0, sizeof(*out));
	if (!root) {
		snprintf(err, errlen, "not JSON: %s (line %d)", jerr.text, jerr.line);
		return -1;
	}
	/* jansson keeps members in the file's order: the canonical text is the file, compacted. */
	out->text = json_dumps(root, JSON_COMPACT | JSON_ENCODE_ANY);
	out->root = out->text ? compile(&x, root, "") : NULL;
	json_decref(root);
	if (out->root && check_records_end(out, err, errlen) < 0) {
		free(out->text); /* not for libavro's eyes */
		out->text = NULL;
		out->root = NULL;
	}
	return out->root ? 0 : -1;
}

void avjson_schema_free(avjson_schema *s)
{
	while (s->all) {
		avjson_node *n = s->all;
		s->all = n->next;
		for (size_t i = 0; n->names && i < n->n; i++)
			free(n->names[i]);
		free(n->names);
		free(n->name_lens);
		free(n->guess);
		free(n->kids);
		free(n->fullname);
		free(n);
	}
	free(s->text); /* json_dumps: malloc'd */
	s->text = NULL;
}
