/* log.c: leveled logging to stderr; one line per message, timestamped unless under journald. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static log_level_t current_level = LOG_LVL_INFO;
static bool journal_prefix;

static const char *const level_names[] = {"error", "warn", "info", "debug"};
/* syslog priorities: err, warning, info, debug */
static const char *const journal_prefixes[] = {"<3>", "<4>", "<6>", "<7>"};

void log_set_level(log_level_t level) { current_level = level; }

log_level_t log_get_level(void) { return current_level; }

void log_set_journal_prefix(bool on) { journal_prefix = on; }

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

/* Formats the whole line first so concurrent writers never interleave within a line. */
void log_msg(log_level_t level, const char *fmt, ...)
{
	char line[2048];
	size_t n = 0;
	va_list ap;

	if (level > current_level)
		return;
	if (journal_prefix) {
		n = (size_t)snprintf(line, sizeof(line), "%s", journal_prefixes[level]);
	} else {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
				      ts.tv_nsec / 1000000, level_names[level]);
	}
	va_start(ap, fmt);
	int w = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (w < 0)
		w = 0;
	n += (size_t)w;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}
