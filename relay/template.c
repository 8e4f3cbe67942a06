/* template.c: topic templates: parsed and checked once (config and start), expanded per record. */
#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static const char *const capture_names[] = {"prefix", "schema", "table", NULL};
static const char *const outbox_names[] = {"schema", "table", "prefix", NULL};

const template_vars template_capture_vars = {"capture topic", capture_names, false};
const template_vars template_outbox_vars = {"outbox topic", outbox_names, true};

/* Kafka's topic name characters: a-z A-Z 0-9 . _ - */
static bool topic_char_ok(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '_' || ch == '-';
}

bool template_topic_name_ok(const char *t, size_t len)
{
	if (len == 0 || len > TEMPLATE_TOPIC_MAX || (len == 1 && t[0] == '.') ||
	    (len == 2 && memcmp(t, "..", 2) == 0))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!topic_char_ok(t[i]))
			return false;
	return true;
}

static void add_seg(topic_template *t, bool is_field, const char *text, size_t len)
{
	t->segs = xrealloc(t->segs, sizeof(template_seg) * (t->n_segs + 1));
	template_seg *g = &t->segs[t->n_segs++];
	g->is_field = is_field;
	g->text = xmalloc(len + 1);
	memcpy(g->text, text, len);
	g->text[len] = '\0';
	g->len = len;
	if (is_field)
		t->n_fields++;
	else
		t->literal_len += len;
}

/* Writes the names vars lists as "${a}, ${b}, ${c}" (for messages). */
static void list_names(const template_vars *vars, char *out, size_t len)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; vars->names[i] && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, "%s${%s}", i ? ", " : "",
					 vars->names[i]);
}

/* A placeholder name: non-empty, no '$' or '{' (a nested or broken placeholder), accepted. */
static int check_name(const char *tmpl, const char *name, size_t len, const template_vars *vars,
		      char *err, size_t errlen)
{
	char names[128];

	if (len == 0) {
		snprintf(err, errlen, "topic template '%s' holds an empty placeholder '${}'", tmpl);
		return -1;
	}
	if (memchr(name, '$', len) || memchr(name, '{', len)) {
		snprintf(err, errlen, "topic template '%s': placeholder '${%.*s}' holds '$' or '{'",
			 tmpl, (int)len, name);
		return -1;
	}
	for (size_t i = 0; vars->names[i]; i++)
		if (strlen(vars->names[i]) == len && memcmp(vars->names[i], name, len) == 0)
			return 0;
	if (vars->any_name)
		return 0;
	list_names(vars, names, sizeof(names));
	snprintf(err, errlen, "topic template '%s': unknown placeholder '${%.*s}' (a %s takes %s)",
		 tmpl, (int)len, name, vars->kind, names);
	return -1;
}

/* Rejects literal text no topic name may hold, so that a bad template fails at startup. */
static int check_literals(const topic_template *t, const char *tmpl, char *err, size_t errlen)
{
	for (size_t i = 0; i < t->n_segs; i++) {
		const template_seg *g = &t->segs[i];
		for (size_t k = 0; !g->is_field && k < g->len; k++) {
			if (!topic_char_ok(g->text[k])) {
				snprintf(err, errlen, "topic template '%s' holds a character Kafka "
					 "topic names cannot have (allowed: a-z A-Z 0-9 . _ -)", tmpl);
				return -1;
			}
		}
	}
	if (t->literal_len > TEMPLATE_TOPIC_MAX) {
		snprintf(err, errlen, "topic template '%s' is longer than 249 characters", tmpl);
		return -1;
	}
	if (t->n_fields == 0 && !template_topic_name_ok(t->segs[0].text, t->segs[0].len)) {
		snprintf(err, errlen, "topic template '%s' is not a valid Kafka topic name", tmpl);
		return -1;
	}
	return 0;
}

/* Splits "outbox.${aggregate_type}" into literal and placeholder segments. */
static int split(topic_template *t, const char *tmpl, const template_vars *vars, char *err,
		 size_t errlen)
{
	const char *p = tmpl;

	while (*p) {
		const char *open = strstr(p, "${");
		if (!open) {
			add_seg(t, false, p, strlen(p));
			break;
		}
		if (open > p)
			add_seg(t, false, p, (size_t)(open - p));
		const char *close = strchr(open, '}');
		if (!close) {
			snprintf(err, errlen, "topic template '%s': '${' without a closing '}'", tmpl);
			return -1;
		}
		if (check_name(tmpl, open + 2, (size_t)(close - open - 2), vars, err, errlen) < 0)
			return -1;
		add_seg(t, true, open + 2, (size_t)(close - open - 2));
		p = close + 1;
	}
	if (t->n_segs == 0) {
		snprintf(err, errlen, "topic template is empty");
		return -1;
	}
	return check_literals(t, tmpl, err, errlen);
}

int template_compile(topic_template *t, const char *text, const template_vars *vars, char *err,
		     size_t errlen)
{
	memset(t, 0, sizeof(*t));
	if (split(t, text, vars, err, errlen) == 0)
		return 0;
	template_free(t);
	return -1;
}

int template_check(const char *text, const template_vars *vars, char *err, size_t errlen)
{
	topic_template t;
	int r = template_compile(&t, text, vars, err, errlen);

	template_free(&t);
	return r;
}

void template_free(topic_template *t)
{
	for (size_t k = 0; k < t->n_segs; k++)
		free(t->segs[k].text);
	free(t->segs);
	memset(t, 0, sizeof(*t));
}

int template_expand(const topic_template *t, template_value_fn value, void *ctx, char *out,
		    const char **why)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < t->n_segs; i++) {
		const template_seg *g = &t->segs[i];
		const char *text = g->text;
		size_t len = g->len;
		if (g->is_field && value(ctx, g->text, &text, &len, why) < 0)
			return -1;
		if (!text)
			return *why = "a field of the topic template is null or missing", -1;
		if (len > TEMPLATE_TOPIC_MAX - used) {
			memcpy(out + used, text, TEMPLATE_TOPIC_MAX - used);
			out[TEMPLATE_TOPIC_MAX] = '\0';
			return *why = "the topic name made from the template is not a valid Kafka "
				      "topic name (longer than 249 characters)", -1;
		}
		memcpy(out + used, text, len);
		used += len;
		out[used] = '\0';
	}
	if (!template_topic_name_ok(out, used))
		return *why = "the topic name made from the template is not a valid Kafka topic name", -1;
	return (int)used;
}

/* Whether name[0..len) matches segments from seg on: a placeholder takes any run of characters. */
static bool matches_from(const topic_template *t, size_t seg, const char *name, size_t len)
{
	if (seg == t->n_segs)
		return len == 0;
	const template_seg *g = &t->segs[seg];
	if (!g->is_field)
		return len >= g->len && memcmp(name, g->text, g->len) == 0 &&
		       matches_from(t, seg + 1, name + g->len, len - g->len);
	for (size_t take = 0; take <= len; take++)
		if (matches_from(t, seg + 1, name + take, len - take))
			return true;
	return false;
}

bool template_may_expand_to(const topic_template *t, const char *name, size_t len)
{
	return matches_from(t, 0, name, len);
}
