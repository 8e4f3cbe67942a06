/* json_out.c: the one JSON string escaper (see json_out.h). */
#include "json_out.h"

#include <stdio.h>

const char *json_out_escape(unsigned char ch, char buf[JSON_OUT_ESC_MAX])
{
	switch (ch) {
	case '"': return "\\\"";
	case '\\': return "\\\\";
	case '\b': return "\\b";
	case '\f': return "\\f";
	case '\n': return "\\n";
	case '\r': return "\\r";
	case '\t': return "\\t";
	default: break;
	}
	if (ch >= 0x20)
		return NULL;
	snprintf(buf, JSON_OUT_ESC_MAX, "\\u%04x", ch);
	return buf;
}

/* Copies runs of plain bytes whole: names and texts are mostly plain. */
void json_out_string(strbuf *b, const char *s, size_t n)
{
	char buf[JSON_OUT_ESC_MAX];
	size_t run = 0;

	strbuf_grow(b, n + 2);
	strbuf_addc(b, '"');
	for (size_t i = 0; i < n; i++) {
		const char *esc = json_out_escape((unsigned char)s[i], buf);
		if (!esc)
			continue;
		strbuf_addn(b, s + run, i - run);
		strbuf_add(b, esc);
		run = i + 1;
	}
	strbuf_addn(b, s + run, n - run);
	strbuf_addc(b, '"');
}
