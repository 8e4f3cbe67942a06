/* log.c: leveled logging to stderr; one line per message, timestamped unless under journald. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static log_level_t current_level = LOG_LVL_INFO;
static bool journal_prefix;
static log_format_t current_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug */
static const char *const journal_prefixes[] = {"<3>", "<4>", "<6>", "<7>"};

void log_set_level(log_level_t level) { current_level = level; }

log_level_t log_get_level(void) { return current_level; }

void log_set_journal_prefix(bool on) { journal_prefix = on; }

void log_set_format(log_format_t format) { current_format = format; }

bool log_parse_format(const char *name, log_format_t *out)
{
	static const char *const names[] = {"text", "logfmt", "json"};
	for (int i = 0; i < 3; i++) {
		if (strcmp(name, names[i]) == 0) {
			*out = (log_format_t)i;
			return true;
		}
	}
	return false;
}

/* Appends text quoted for logfmt or JSON (both: \" \\ and control characters escaped). */
static size_t put_quoted(char *out, size_t cap, const char *text)
{
	size_t n = 0;
	if (n < cap)
		out[n++] = '"';
	for (const unsigned char *c = (const unsigned char *)text; *c && n + 7 < cap; c++) {
		if (*c == '"' || *c == '\\') {
			out[n++] = '\\';
			out[n++] = (char)*c;
		} else if (*c < 0x20) {
			n += (size_t)snprintf(out + n, cap - n, "\\u%04x", *c);
		} else {
			out[n++] = (char)*c;
		}
	}
	if (n < cap)
		out[n++] = '"';
	return n;
}

bool log_parse_level(const char *name, log_level_t *out)
{
	for (int i = 0; i <= LOG_LVL_DEBUG; i++) {
		if (strcmp(name, level_names[i]) == 0) {
			*out = (log_level_t)i;
			return true;
		}
	}
	return false;
}

/* ISO 8601 UTC with milliseconds. */
static void timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Formats the whole line first so concurrent writers never interleave within a line. */
void log_msg(log_level_t level, const char *fmt, ...)
{
	char line[4096], msg[2048], ts[40] = "";
	size_t n = 0;
	va_list ap;

	if (level > current_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (journal_prefix)
		n = (size_t)snprintf(line, sizeof(line), "%s", journal_prefixes[level]);
	else
		timestamp(ts, sizeof(ts));
	if (current_format == LOG_FORMAT_TEXT) {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s%-5s %s", ts, ts[0] ? " " : "",
				      level_names[level], msg);
	} else if (current_format == LOG_FORMAT_LOGFMT) {
		if (ts[0])
			n += (size_t)snprintf(line + n, sizeof(line) - n, "ts=%s ", ts);
		n += (size_t)snprintf(line + n, sizeof(line) - n, "level=%s msg=", level_names[level]);
		n += put_quoted(line + n, sizeof(line) - n, msg);
	} else {
		n += (size_t)snprintf(line + n, sizeof(line) - n, "{");
		if (ts[0])
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\"ts\":\"%s\",", ts);
		n += (size_t)snprintf(line + n, sizeof(line) - n, "\"level\":\"%s\",\"msg\":",
				      level_names[level]);
		n += put_quoted(line + n, sizeof(line) - n, msg);
		if (n < sizeof(line))
			line[n++] = '}';
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}
