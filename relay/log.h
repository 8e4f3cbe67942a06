/* log.h: leveled logging to stderr (journald picks it up), with syslog-style priority prefixes. */
#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#include <stdbool.h>

typedef enum { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "error", "warn", "info", "debug"; returns false on anything else. */
bool log_parse_level(const char *name, log_level_t *out);
typedef enum { LOG_FORMAT_TEXT, LOG_FORMAT_LOGFMT, LOG_FORMAT_JSON } log_format_t;

/* "text", "logfmt" or "json"; false on anything else. */
bool log_parse_format(const char *name, log_format_t *out);
void log_set_format(log_format_t format);
/* With journal prefixes ("<3>"), journald assigns priorities; off for a terminal. */
void log_set_journal_prefix(bool on);

void log_msg(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_get_level() >= LOG_LVL_DEBUG)                          \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                   \
	} while (0)

#endif
