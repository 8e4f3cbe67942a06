/* compat.c: the start-time check of the schema files against the registry's compatibility rules, for every subject they are known to go to. */
#include "compat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "template.h"
#include "xalloc.h"

/* One run of the check: the inputs, the registry's subjects (listed once) and what was checked. */
typedef struct {
	const relay_config *cfg;
	registry_strategy strategy;
	const contract_set *contracts;
	registry *reg;
	topic_template *templates; /* of the Avro sources whose template has placeholders */
	size_t n_templates;
	char **subjects;           /* the registry's, when a template has placeholders */
	size_t n_subjects;
	char **latest;             /* TopicNameStrategy: each subject's latest record name, or NULL */
	bool *latest_known;
	char **fixed;              /* TopicNameStrategy: the fixed topics' subjects asked about */
	char **fixed_latest;       /* and their latest record names (NULL: none, or not known) */
	bool *fixed_known;         /* whether the registry told */
	size_t n_fixed;
	char **done;               /* "<contract index>/<subject>" pairs checked already */
	size_t n_done;
	size_t n_checked;
	size_t n_unchecked;        /* pairs the registry would not check (400, 403, 405) */
	char *err;
	size_t errlen;
} compat_run;

/* True once per (contract, subject) pair: the first time it is seen. */
static bool first_time(compat_run *c, size_t ci, const char *subject)
{
	size_t len = strlen(subject) + 32;
	char *key = xmalloc(len);

	snprintf(key, len, "%zu/%s", ci, subject);
	for (size_t i = 0; i < c->n_done; i++)
		if (strcmp(c->done[i], key) == 0) {
			free(key);
			return false;
		}
	c->done = xrealloc(c->done, sizeof(*c->done) * (c->n_done + 1));
	c->done[c->n_done++] = key;
	return true;
}

/*
 * A question the registry will not answer (400, 403, 405): the pair is not checked (logged for
 * the first such pair); registering the schema at its first event decides (409: dead letter).
 */
static compat_result unchecked(compat_run *c, const char *subject)
{
	if (c->n_unchecked++ == 0)
		log_warn("cannot check the schema files against subject %s at start (%s): not checked; "
			 "the registry decides when the first event registers a schema", subject, c->err);
	return COMPAT_OK;
}

/* One file against one subject: registered already (its text) passes, else the rule decides. */
static compat_result check_pair(compat_run *c, size_t ci, const char *subject)
{
	const contract *k = contract_at(c->contracts, ci);
	const char *text = avjson_schema_text(k->codec);
	bool registered, compatible;
	char reason[512];
	registry_result rr;

	if (!first_time(c, ci, subject))
		return COMPAT_OK;
	rr = registry_registered(c->reg, subject, text, &registered, c->err, c->errlen);
	if (rr == REGISTRY_REFUSED)
		return unchecked(c, subject);
	if (rr != REGISTRY_OK)
		return COMPAT_DOWN;
	if (registered)
		return COMPAT_OK;
	rr = registry_compatible(c->reg, subject, text, &compatible, reason, sizeof(reason), c->err,
				 c->errlen);
	if (rr == REGISTRY_REFUSED)
		return unchecked(c, subject);
	if (rr != REGISTRY_OK)
		return COMPAT_DOWN;
	c->n_checked++;
	if (compatible)
		return COMPAT_OK;
	bool files = c->cfg->schema_dir[0]; /* else a contract from the registry (contract.h) */
	snprintf(c->err, c->errlen, "schema %s%s%s%s is incompatible with subject %s in the schema "
		 "registry: %s; make the new version compatible with the subject's latest (or change "
		 "the subject's compatibility) and start again", files ? "file " : "",
		 c->cfg->schema_dir, files ? "/" : "", k->file, subject, reason);
	return COMPAT_REFUSED;
}

/* The index of a fixed topic's subject in the run's list: its latest record name asked once. */
static compat_result fixed_latest(compat_run *c, const char *subject, size_t *at)
{
	for (*at = 0; *at < c->n_fixed; (*at)++)
		if (strcmp(c->fixed[*at], subject) == 0)
			return COMPAT_OK;
	char *latest = NULL;
	registry_result rr = registry_latest_name(c->reg, subject, &latest, c->err, c->errlen);
	if (rr == REGISTRY_DOWN)
		return COMPAT_DOWN;
	if (rr == REGISTRY_REFUSED)
		log_warn("not checking subject %s at start: %s", subject, c->err);
	c->fixed = xrealloc(c->fixed, sizeof(*c->fixed) * (c->n_fixed + 1));
	c->fixed_latest = xrealloc(c->fixed_latest, sizeof(*c->fixed_latest) * (c->n_fixed + 1));
	c->fixed_known = xrealloc(c->fixed_known, sizeof(*c->fixed_known) * (c->n_fixed + 1));
	c->fixed[c->n_fixed] = xstrdup(subject);
	c->fixed_latest[c->n_fixed] = latest;
	c->fixed_known[c->n_fixed++] = rr == REGISTRY_OK;
	return COMPAT_OK;
}

/*
 * TopicNameStrategy puts every event type of a fixed topic under one subject: a file is checked
 * there only when it is that subject's record (the latest version has the file's full name, or
 * both are unnamed), or the subject is empty; the other event types of the topic are not its
 * versions.
 */
static compat_result check_fixed_subject(compat_run *c, size_t ci, const char *subject)
{
	const char *name = avjson_schema_name(contract_at(c->contracts, ci)->codec);
	size_t at;

	if (c->strategy != REGISTRY_TOPIC_NAME)
		return check_pair(c, ci, subject);
	if (fixed_latest(c, subject, &at) != COMPAT_OK)
		return COMPAT_DOWN;
	const char *latest = c->fixed_latest[at];
	if (!c->fixed_known[at] || (latest && (!name || strcmp(latest, name) != 0)) || (!latest && name))
		return COMPAT_OK; /* another record's subject, not known, or empty: nothing to check */
	return check_pair(c, ci, subject);
}

/* The subjects of the sources whose topic is fixed (no placeholder), by the strategy. */
static compat_result check_fixed_topics(compat_run *c, size_t ci)
{
	const char *name = avjson_schema_name(contract_at(c->contracts, ci)->codec);
	char subject[REGISTRY_SUBJECT_MAX];
	compat_result res = COMPAT_OK;

	if (c->strategy == REGISTRY_RECORD_NAME)
		return name ? check_pair(c, ci, name) : COMPAT_OK;
	for (int i = 0; res == COMPAT_OK && i < c->cfg->n_sources; i++) {
		const source_config *s = &c->cfg->sources[i];
		if (strcmp(s->format, "avro") != 0 || strstr(s->topic, "${"))
			continue;
		if (registry_subject(c->strategy, s->topic, name, subject, sizeof(subject)) == 0)
			res = check_fixed_subject(c, ci, subject);
	}
	return res;
}

/* True when a template with placeholders may have written topic (len bytes). */
static bool some_template_writes(const compat_run *c, const char *topic, size_t len)
{
	for (size_t i = 0; i < c->n_templates; i++)
		if (template_may_expand_to(&c->templates[i], topic, len))
			return true;
	return false;
}

/* Whether subject is where contract ci's earlier versions went, for the templates' topics. */
static compat_result is_earlier_home(compat_run *c, size_t si, const char *name, bool *home)
{
	const char *s = c->subjects[si];
	size_t len = strlen(s), nlen = strlen(name);

	*home = false;
	if (c->strategy == REGISTRY_TOPIC_RECORD_NAME) {
		*home = len > nlen + 1 && s[len - nlen - 1] == '-' && strcmp(s + len - nlen, name) == 0 &&
			some_template_writes(c, s, len - nlen - 1);
		return COMPAT_OK;
	}
	if (len <= 6 || strcmp(s + len - 6, "-value") != 0 || !some_template_writes(c, s, len - 6))
		return COMPAT_OK;
	if (!c->latest_known[si]) { /* asked once per subject, for all files */
		registry_result rr = registry_latest_name(c->reg, s, &c->latest[si], c->err, c->errlen);
		if (rr == REGISTRY_DOWN)
			return COMPAT_DOWN;
		if (rr == REGISTRY_REFUSED)
			log_warn("not checking subject %s at start: %s", s, c->err);
		c->latest_known[si] = true;
	}
	*home = c->latest[si] && strcmp(c->latest[si], name) == 0;
	return COMPAT_OK;
}

/* The registry's subjects that the sources with placeholders in their topic may have written. */
static compat_result check_found_subjects(compat_run *c, size_t ci)
{
	const char *name = avjson_schema_name(contract_at(c->contracts, ci)->codec);
	compat_result res = COMPAT_OK;
	bool home;

	if (!name || c->strategy == REGISTRY_RECORD_NAME)
		return COMPAT_OK;
	for (size_t si = 0; res == COMPAT_OK && si < c->n_subjects; si++) {
		res = is_earlier_home(c, si, name, &home);
		if (res == COMPAT_OK && home)
			res = check_pair(c, ci, c->subjects[si]);
	}
	return res;
}

/* Compiles the templates with placeholders of the Avro sources; lists the subjects when any. */
static compat_result prepare(compat_run *c)
{
	char msg[300];

	c->templates = xcalloc((size_t)c->cfg->n_sources + 1, sizeof(*c->templates));
	for (int i = 0; i < c->cfg->n_sources; i++) {
		const source_config *s = &c->cfg->sources[i];
		if (strcmp(s->format, "avro") == 0 && strstr(s->topic, "${") &&
		    template_compile(&c->templates[c->n_templates], s->topic, &template_outbox_vars, msg,
				     sizeof(msg)) == 0)
			c->n_templates++;
	}
	if (c->n_templates == 0 || c->strategy == REGISTRY_RECORD_NAME)
		return COMPAT_OK;
	registry_result rr = registry_subjects(c->reg, &c->subjects, &c->n_subjects, c->err, c->errlen);
	if (rr == REGISTRY_DOWN)
		return COMPAT_DOWN;
	if (rr == REGISTRY_REFUSED) /* known subjects only; a refusal at an event stays possible */
		log_warn("cannot list the schema registry's subjects at start (%s): checking only the "
			 "subjects known from the configuration", c->err);
	c->latest = xcalloc(c->n_subjects + 1, sizeof(*c->latest));
	c->latest_known = xcalloc(c->n_subjects + 1, sizeof(*c->latest_known));
	return COMPAT_OK;
}

/* Frees what one run made. */
static void finish(compat_run *c)
{
	for (size_t i = 0; i < c->n_templates; i++)
		template_free(&c->templates[i]);
	free(c->templates);
	for (size_t i = 0; i < c->n_subjects; i++) {
		free(c->subjects[i]);
		if (c->latest)
			free(c->latest[i]);
	}
	free(c->subjects);
	free(c->latest);
	free(c->latest_known);
	for (size_t i = 0; i < c->n_fixed; i++) {
		free(c->fixed[i]);
		free(c->fixed_latest[i]);
	}
	free(c->fixed);
	free(c->fixed_latest);
	free(c->fixed_known);
	for (size_t i = 0; i < c->n_done; i++)
		free(c->done[i]);
	free(c->done);
}

compat_result compat_check(const relay_config *cfg, registry_strategy strategy,
			   const contract_set *contracts, registry *reg, char *err, size_t errlen)
{
	compat_run c = {.cfg = cfg, .strategy = strategy, .contracts = contracts, .reg = reg,
			.err = err, .errlen = errlen};
	compat_result res;

	if (!cfg->registry_auto_register)
		return COMPAT_OK;
	res = prepare(&c);
	for (size_t ci = 0; res == COMPAT_OK && ci < contract_set_count(contracts); ci++) {
		res = check_fixed_topics(&c, ci);
		if (res == COMPAT_OK)
			res = check_found_subjects(&c, ci);
	}
	if (res == COMPAT_OK)
		log_info("Avro: %zu schema files checked at start: %zu (file, subject) pairs new to the "
			 "registry, all compatible; %zu the registry would not check",
			 contract_set_count(contracts), c.n_checked, c.n_unchecked);
	finish(&c);
	return res;
}
