/* log.h: leveled logging to stderr (journald picks it up), with syslog-style priority prefixes. */
#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#include <stdbool.h>
#include <stddef.h>

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

/*
 * One log line (with its newline) of msg into out, cut to cap bytes: prefix (a journal priority
 * or ""), ts ("" for none), level, then msg escaped for the format, so that no name or value in
 * it can make a line of its own: in text, \n \r \t \\ and \xNN for other control bytes and for
 * bytes that are not UTF-8, \uXXXX for C1 controls, U+2028/2029 and bidi controls; logfmt the
 * same inside quotes (and \"); JSON its own escapes (U+FFFD for bytes that are not UTF-8).
 * Trailing newlines of msg are dropped. Returns the line's length.
 */
size_t log_format_line(char *out, size_t cap, log_format_t fmt, log_level_t level,
		       const char *prefix, const char *ts, const char *msg);

/* text escaped as a text-format log line escapes it (NUL-terminated, cut to cap): one line. */
size_t log_escape_text(char *out, size_t cap, const char *text);

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
