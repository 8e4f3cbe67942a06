/* timeline.c: timeline history files read as PostgreSQL reads them, and a checkpoint cut back to a fork. */
#include "timeline.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

/* White space as isspace() in the C locale, which PostgreSQL's history parser skips. */
static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && is_space(*p))
		p++;
	return p;
}

/* A decimal timeline id (1 to 2^32-1); NULL when there is none or it does not fit. */
static const char *parse_tli(const char *p, const char *end, uint32_t *tli)
{
	uint64_t v = 0;
	const char *start = p;

	while (p < end && *p >= '0' && *p <= '9') {
		v = v * 10 + (uint64_t)(*p++ - '0');
		if (v > UINT32_MAX)
			return NULL;
	}
	if (p == start || v == 0)
		return NULL;
	*tli = (uint32_t)v;
	return p;
}

/* Up to 8 hex digits; NULL when there is none, or a ninth follows (it would not fit). */
static const char *parse_hex32(const char *p, const char *end, uint32_t *out)
{
	const char *start = p;
	uint32_t v = 0;

	for (; p < end && p - start < 9; p++) {
		char c = *p;
		unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
			     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
			     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
						    : 16;
		if (d == 16)
			break;
		v = (v << 4) | d;
	}
	if (p == start || p - start > 8)
		return NULL;
	*out = v;
	return p;
}

/* "X/Y", then white space or the end of the line (the reason follows a tab); NULL if not. */
static const char *parse_switchpoint(const char *p, const char *end, lsn_t *lsn)
{
	uint32_t hi, lo;

	p = parse_hex32(p, end, &hi);
	if (!p || p == end || *p != '/')
		return NULL;
	p = parse_hex32(p + 1, end, &lo);
	if (!p || (p < end && !is_space(*p)))
		return NULL;
	*lsn = ((lsn_t)hi << 32) | lo;
	return p;
}

/*
 * One line [p, end) of the history: 1 with its parent timeline and switchpoint, 0 for a comment
 * or blank line, -1 when malformed.
 */
static int parse_line(const char *p, const char *end, uint32_t *tli, lsn_t *switchpoint)
{
	p = skip_space(p, end);
	if (p == end || *p == '#')
		return 0;
	p = parse_tli(p, end, tli);
	if (!p)
		return -1;
	p = skip_space(p, end);
	return parse_switchpoint(p, end, switchpoint) ? 1 : -1;
}

timeline_found timeline_switchpoint(const char *text, size_t len, uint32_t current, uint32_t tli,
				    lsn_t *end)
{
	const char *p = text, *stop = text + len;
	uint32_t last = 0;
	timeline_found found = TIMELINE_NOT_ANCESTOR;

	while (p < stop) {
		const char *nl = memchr(p, '\n', (size_t)(stop - p));
		const char *line_end = nl ? nl : stop;
		uint32_t parent;
		lsn_t at;
		int r = parse_line(p, line_end, &parent, &at);

		if (r < 0 || (r == 1 && (parent <= last || parent >= current)))
			return TIMELINE_MALFORMED;
		if (r == 1) {
			last = parent;
			if (parent == tli) {
				*end = at;
				found = TIMELINE_ANCESTOR;
			}
		}
		p = nl ? nl + 1 : stop;
	}
	return found;
}

void timeline_phantoms_free(timeline_phantoms *ph)
{
	free(ph->xids);
	memset(ph, 0, sizeof(*ph));
}

static int cmp_xid(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Takes the listed xids that end beyond the fork out of rec (they are its last: ends ascend). */
static void take_phantom_xids(checkpoint_recovery *rec, lsn_t fork, timeline_phantoms *ph)
{
	size_t keep = rec->n_xids;

	while (keep > 0 && rec->ends[keep - 1] > fork)
		keep--;
	ph->n_xids = rec->n_xids - keep;
	ph->xids = xmalloc((ph->n_xids + 1) * sizeof(uint32_t));
	memcpy(ph->xids, rec->xids + keep, ph->n_xids * sizeof(uint32_t));
	qsort(ph->xids, ph->n_xids, sizeof(uint32_t), cmp_xid);
	rec->n_xids = keep;
}

/* What the list says of the published transactions between the fork and the checkpoint. */
static void name_phantoms(const checkpoint *cp, checkpoint_recovery *rec, lsn_t fork,
			  timeline_phantoms *ph)
{
	if (cp->lsn <= fork)
		return;
	if (rec->commit_us <= 0 || (!rec->ends && rec->n_xids > 0)) {
		ph->unnamed = true;
		/* On the new timeline these xids may be given to other transactions. */
		rec->n_xids = 0;
		return;
	}
	if (rec->ends)
		take_phantom_xids(rec, fork, ph);
	ph->maybe_more = rec->xids_after == LSN_INVALID || fork < rec->xids_after;
}

bool timeline_cut(checkpoint *cp, checkpoint_recovery *rec, lsn_t fork, timeline_phantoms *ph)
{
	bool beyond = cp->lsn > fork || cp->partial_nextlsn > fork;

	memset(ph, 0, sizeof(*ph));
	if (!beyond)
		return false;
	name_phantoms(cp, rec, fork, ph);
	if (cp->partial_nextlsn > fork) {
		ph->partial = true;
		ph->partial_xid = cp->partial_xid;
		ph->partial_rows = cp->partial_rows;
		cp->partial_nextlsn = LSN_INVALID;
		cp->partial_rows = 0;
		cp->partial_xid = 0;
	}
	if (cp->lsn > fork)
		cp->lsn = fork;
	if (rec->xids_after > cp->lsn)
		rec->xids_after = cp->lsn;
	return true;
}

size_t timeline_format_xids(strbuf *out, const uint32_t *xids, size_t n, size_t max)
{
	size_t i = 0, start = out->len;

	while (i < n && out->len - start < max) {
		size_t j = i;
		while (j + 1 < n && xids[j + 1] == xids[j] + 1)
			j++;
		strbuf_addf(out, i ? ", %u" : "%u", xids[i]);
		if (j > i)
			strbuf_addf(out, "-%u", xids[j]);
		i = j + 1;
	}
	return i;
}
