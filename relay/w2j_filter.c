/* w2j_filter.c: wal2json's add-tables and add-msg-prefixes lists (see w2j_filter.h). */
#include "w2j_filter.h"

#include <ctype.h>
#include <string.h>

/* One part of a name, each character wal2json would take for syntax behind a backslash. */
static void put_part(strbuf *list, const char *p, size_t n, bool pattern)
{
	if (pattern && n == 1 && p[0] == '*') {
		strbuf_addc(list, '*');
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (strchr(",.\\*", p[i]) || isspace((unsigned char)p[i]))
			strbuf_addc(list, '\\');
		strbuf_addc(list, p[i]);
	}
}

void w2j_filter_add_table(strbuf *list, const char *name, bool pattern)
{
	const char *dot = strchr(name, '.');

	if (list->len > 0)
		strbuf_addc(list, ',');
	if (dot)
		put_part(list, name, (size_t)(dot - name), pattern);
	strbuf_addc(list, '.');
	dot = dot ? dot + 1 : name;
	put_part(list, dot, strlen(dot), pattern);
}

/* Appends a message prefix, comma-separated. */
static void add_prefix(strbuf *list, const char *prefix)
{
	if (list->len > 0)
		strbuf_addc(list, ',');
	strbuf_add(list, prefix);
}

void w2j_filter_lists(const relay_config *cfg, const char *snapshot_prefix, strbuf *tables,
		      strbuf *prefixes)
{
	for (int i = 0; i < cfg->n_sources; i++) {
		const source_config *s = &cfg->sources[i];
		if (s->table[0])
			w2j_filter_add_table(tables, s->table, false);
		else
			add_prefix(prefixes, s->message_prefix);
	}
	for (int i = 0; i < cfg->n_captures; i++)
		w2j_filter_add_table(tables, cfg->captures[i].tables, true);
	if (snapshot_prefix)
		add_prefix(prefixes, snapshot_prefix);
}
