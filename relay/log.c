/* log.c: leveled logging to stderr; one line per message, timestamped unless under journald. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json_out.h"

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

/* The line being written: appends that do not fit are left out whole (never half an escape). */
typedef struct {
	char *p;
	size_t n, cap;
} log_buf;

static bool put(log_buf *b, const char *s, size_t len)
{
	if (len > b->cap - b->n)
		return false;
	memcpy(b->p + b->n, s, len);
	b->n += len;
	return true;
}

static bool put_str(log_buf *b, const char *s) { return put(b, s, strlen(s)); }

/* The length of the valid UTF-8 sequence at s (1 to 4) with its code point, or 0 when invalid. */
static size_t utf8_seq(const unsigned char *s, size_t left, uint32_t *cp)
{
	size_t need = s[0] >= 0xC2 && s[0] <= 0xDF ? 1 : s[0] >= 0xE0 && s[0] <= 0xEF ? 2
		    : s[0] >= 0xF0 && s[0] <= 0xF4 ? 3 : 0;

	if (need == 0 || left <= need)
		return 0;
	*cp = s[0] & (0x3F >> need);
	for (size_t k = 1; k <= need; k++) {
		if ((s[k] & 0xC0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[k] & 0x3F);
	}
	if ((need == 2 && *cp < 0x800) || (need == 3 && *cp < 0x10000) || *cp > 0x10FFFF ||
	    (*cp >= 0xD800 && *cp <= 0xDFFF))
		return 0;
	return need + 1;
}

/*
 * Code points a log viewer may take for a line break or that reorder what it shows: C1
 * controls (U+0085 is a newline to some), line and paragraph separators, bidi controls.
 */
static bool log_cp_hidden(uint32_t cp)
{
	return (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
	       (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

/*
 * Appends one byte (or UTF-8 sequence) of a message, escaped: never a raw control character,
 * so a name or value in the message cannot start a line of its own or hide text. Text and
 * logfmt write C-style escapes (\n, \x01, \u2028); JSON writes json_out's escapes for ASCII,
 * and U+FFFD for a byte that is not UTF-8 (JSON text must be UTF-8). Returns the bytes of text
 * consumed, 0 when the line is full.
 */
static size_t put_escaped_char(log_buf *b, const unsigned char *s, size_t left, log_format_t fmt)
{
	char esc[16];
	uint32_t cp = 0;
	size_t seq;
	const char *short_esc = s[0] == '\n' ? "\\n" : s[0] == '\r' ? "\\r" : s[0] == '\t' ? "\\t"
			      : s[0] == '\\' ? "\\\\" : s[0] == '"' && fmt == LOG_FORMAT_LOGFMT ? "\\\"" : NULL;

	if (fmt == LOG_FORMAT_JSON && s[0] < 0x80) {
		/* DEL too: valid JSON raw, but in a terminal it hides a character. */
		const char *json_esc = s[0] == 0x7F ? "\\u007f" : json_out_escape(s[0], esc);
		if (json_esc)
			return put_str(b, json_esc) ? 1 : 0;
		return put(b, (const char *)s, 1) ? 1 : 0;
	}
	if (short_esc)
		return put_str(b, short_esc) ? 1 : 0;
	if (s[0] < 0x20 || s[0] == 0x7F) {
		snprintf(esc, sizeof(esc), "\\x%02x", s[0]);
		return put_str(b, esc) ? 1 : 0;
	}
	if (s[0] < 0x80)
		return put(b, (const char *)s, 1) ? 1 : 0;
	if ((seq = utf8_seq(s, left, &cp)) == 0) {
		snprintf(esc, sizeof(esc), "\\x%02x", s[0]);
		return put_str(b, fmt == LOG_FORMAT_JSON ? "\\ufffd" : esc) ? 1 : 0;
	}
	if (!log_cp_hidden(cp))
		return put(b, (const char *)s, seq) ? seq : 0;
	snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
	return put_str(b, esc) ? seq : 0;
}

/* Appends a whole message escaped (for its format), stopping where the line is full. */
static void put_escaped(log_buf *b, const char *msg, log_format_t fmt)
{
	const unsigned char *s = (const unsigned char *)msg;
	size_t len = strlen(msg);

	/* PostgreSQL ends its error texts with a newline: nothing to show of it. */
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	for (size_t i = 0, used = 1; i < len && used > 0; i += used)
		used = put_escaped_char(b, s + i, len - i, fmt);
}

size_t log_escape_text(char *out, size_t cap, const char *text)
{
	log_buf b = {out, 0, cap > 0 ? cap - 1 : 0};

	put_escaped(&b, text, LOG_FORMAT_TEXT);
	if (cap > 0)
		out[b.n] = '\0';
	return b.n;
}

size_t log_format_line(char *out, size_t cap, log_format_t fmt, log_level_t level,
		       const char *prefix, const char *ts, const char *msg)
{
	/* Room kept back for the end of the line: a JSON object's closing and the newline. */
	log_buf b = {out, 0, cap > 8 ? cap - 3 : 0};
	char head[96];

	put_str(&b, prefix);
	if (fmt == LOG_FORMAT_TEXT) {
		snprintf(head, sizeof(head), "%s%s%-5s ", ts, ts[0] ? " " : "", level_names[level]);
		put_str(&b, head);
		put_escaped(&b, msg, fmt);
	} else if (fmt == LOG_FORMAT_LOGFMT) {
		snprintf(head, sizeof(head), "%s%s%slevel=%s msg=\"", ts[0] ? "ts=" : "", ts,
			 ts[0] ? " " : "", level_names[level]);
		put_str(&b, head);
		put_escaped(&b, msg, fmt);
		b.cap = cap, put_str(&b, "\"");
	} else {
		snprintf(head, sizeof(head), "{%s%s%s\"level\":\"%s\",\"msg\":\"", ts[0] ? "\"ts\":\"" : "",
			 ts, ts[0] ? "\"," : "", level_names[level]);
		put_str(&b, head);
		put_escaped(&b, msg, fmt);
		b.cap = cap, put_str(&b, "\"}");
	}
	b.cap = cap;
	put_str(&b, "\n");
	return b.n;
}

/* Formats the whole line first so concurrent writers never interleave within a line. */
void log_msg(log_level_t level, const char *fmt, ...)
{
	char line[8192], msg[2048], ts[40] = "";
	va_list ap;

	if (level > current_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!journal_prefix)
		timestamp(ts, sizeof(ts));
	size_t n = log_format_line(line, sizeof(line), current_format, level,
				   journal_prefix ? journal_prefixes[level] : "", ts, msg);
	fwrite(line, 1, n, stderr);
}
