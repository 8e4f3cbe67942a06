/* config_check.c: checks of single configuration values, so that check-config, start-up and SIGHUP refuse the same files. */
#include "config_check.h"

#include <stdio.h>
#include <string.h>

#include "metrics.h"
#include "template.h"

int config_check_source_table(const char *name, const char *value, char *msg, size_t len)
{
	const char *dot = strchr(value, '.');

	if (!value[0] || (dot && dot != value && dot[1] != '\0'))
		return 0;
	snprintf(msg, len, "%s '%s' must be schema.table", name, value);
	return -1;
}

/* A topic template of the given kind, reported as "NAME: topic template '...' ...". */
static int check_topic(const char *name, const char *value, const template_vars *vars, char *msg,
		       size_t len)
{
	char why[512];

	if (template_check(value, vars, why, sizeof(why)) == 0)
		return 0;
	snprintf(msg, len, "%s: %s", name, why);
	return -1;
}

int config_check_outbox_topic(const char *name, const char *value, char *msg, size_t len)
{
	return check_topic(name, value, &template_outbox_vars, msg, len);
}

int config_check_capture_topic(const char *name, const char *value, char *msg, size_t len)
{
	return check_topic(name, value, &template_capture_vars, msg, len);
}

int config_check_column(const char *name, const char *value, char *msg, size_t len)
{
	if (value[0])
		return 0;
	snprintf(msg, len, "%s must name a column", name);
	return -1;
}

/* One part of a capture pattern: "*" or a name without "*" (wal2json matches whole parts). */
static bool pattern_part_ok(const char *p, size_t len)
{
	if (len == 0)
		return false;
	if (len == 1 && p[0] == '*')
		return true;
	return memchr(p, '*', len) == NULL;
}

int config_check_capture_tables(const char *name, const char *value, char *msg, size_t len)
{
	const char *dot = strchr(value, '.');

	if (dot && pattern_part_ok(value, (size_t)(dot - value)) &&
	    pattern_part_ok(dot + 1, strlen(dot + 1)))
		return 0;
	snprintf(msg, len, "%s '%s' must be schema.table, where either part may be * (for example "
		 "public.users, public.*, *.orders)", name, value);
	return -1;
}

bool config_pattern_part_matches(const char *pat, size_t plen, const char *name)
{
	return (plen == 1 && pat[0] == '*') || (strlen(name) == plen && memcmp(pat, name, plen) == 0);
}

int config_check_metrics_listen(const char *name, const char *value, char *msg, size_t len)
{
	char host[256], port[8];
	const char *why = NULL;

	if (metrics_parse_listen(value, host, sizeof(host), port, sizeof(port), &why) == 0)
		return 0;
	snprintf(msg, len, "%s '%s' %s", name, value, why);
	return -1;
}

/*
 * PostgreSQL's own rule for slot names (ReplicationSlotValidateName): checked at load so that a
 * name the server would refuse, or one the checkpoint's JSON cannot hold (not UTF-8), is a
 * config error with its line, not a failure after the relay has started.
 */
int config_check_slot_name(const char *name, const char *value, char *msg, size_t len)
{
	size_t n = strlen(value);

	if (n >= 1 && n <= 63 && strspn(value, "abcdefghijklmnopqrstuvwxyz0123456789_") == n)
		return 0;
	snprintf(msg, len, "%s must be 1 to 63 lower-case letters, digits or '_' (PostgreSQL's rule "
		 "for slot names)", name);
	return -1;
}

/* Written into every encrypted value, so kept to characters that need no quoting anywhere. */
int config_check_key_id(const char *name, const char *value, char *msg, size_t len)
{
	size_t n = strlen(value);

	if (n >= 1 && n <= 32 && strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
					      "0123456789._-") == n)
		return 0;
	snprintf(msg, len, "%s '%s' must be 1 to 32 letters, digits, '.', '_' or '-' (it is "
		 "written into every encrypted value)", name, value);
	return -1;
}
