/* fuzz_protect.c: libFuzzer target for relay/protect.c: JSON path selection and rewriting of protected fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "jansson_oracle.h"
#include "protect.h"
#include "strbuf.h"

#define MAX_PATHS 8

/*
 * A deterministic stand-in for the actions: rule 1 masks to "*", rule 2 writes the clear text
 * after a mark byte \u0001 (so a replaced value is told from one left as it was).
 */
static int fake_action(void *ctx, const protect_path *p, const char *clear, size_t len,
		       bool is_string, strbuf *out, const char **why)
{
	(void)ctx;
	(void)why;
	(void)is_string;
	if (p->rule % 2 == 1) {
		STRBUF_ADD_LIT(out, "\"*\"");
		return 0;
	}
	/* The clear text of a string was decoded: written back as a JSON string it stays JSON. */
	STRBUF_ADD_LIT(out, "\"\\u0001");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)clear[i];
		if (c < 0x20 || c == '"' || c == '\\')
			strbuf_addf(out, "\\u%04x", c);
		else
			strbuf_addc(out, (char)c);
	}
	strbuf_addc(out, '"');
	return 0;
}

/* True when a part is an array index: dropping an element shifts the ones after it. */
static bool has_index(const protect_path *p)
{
	for (int i = 0; i < p->depth; i++)
		if (p->lens[i] > 0 && strspn(p->parts[i], "0123456789") == p->lens[i])
			return true;
	return false;
}

/* True when the text is one JSON value for jansson. */
static bool jansson_takes(const char *s, size_t n)
{
	char *str = NULL;
	size_t sl;
	oracle_kind k = jansson_oracle(s, n, &str, &sl);
	free(str);
	return k != ORACLE_REJECTED && !memchr(s, '\0', n);
}

/*
 * Input: a first line of paths separated by spaces (every third one drops; the dropping ones
 * come first in rule order, so they win where paths meet), then the JSON text. The rewritten
 * text must be JSON whenever the input was, and rewriting it again with the dropping paths
 * only (but those with an array index: a drop shifts the elements) must find nothing to drop.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data, *nl = memchr(in, '\n', size);
	protect_path paths[MAX_PATHS];
	const protect_path *sel[MAX_PATHS], *drops[MAX_PATHS];
	size_t n = 0, nd = 0;
	static protect_rw *rw;
	strbuf out = {0}, again = {0};
	const char *why = NULL;

	if (!nl)
		return 0;
	if (!rw)
		rw = protect_rw_new();
	char *line = strndup(in, (size_t)(nl - in)), *save = NULL;
	for (char *tok = strtok_r(line, " ", &save); tok && n < MAX_PATHS; tok = strtok_r(NULL, " ", &save))
		if (protect_path_parse(tok, n % 3 == 2 ? (int)n : 100 + (int)n, n % 3 == 2, &paths[n]) == 0) {
			sel[n] = &paths[n];
			if (paths[n].drop && !has_index(&paths[n]))
				drops[nd++] = &paths[n];
			n++;
		}
	free(line);
	bool any_drop = false;
	for (size_t i = 0; i < n; i++)
		any_drop |= paths[i].drop;
	const char *json = nl + 1;
	size_t len = size - (size_t)(json - in);
	int rc = protect_rewrite(rw, json, len, sel, n, fake_action, NULL, &out, &why);
	if (rc == 1) {
		FUZZ_CHECK(out.s != NULL);
		if (jansson_takes(json, len)) {
			FUZZ_CHECK(jansson_takes(out.s, out.len));
			/*
			 * Every value a replacing path takes is null or replaced (a drop before it in
			 * an array shifts elements under an index path: those are not checked).
			 */
			for (size_t i = 0; i < n; i++)
				if (!paths[i].drop && !(has_index(&paths[i]) && any_drop))
					FUZZ_CHECK(jansson_oracle_replaced(out.s, out.len,
									   (const char *const *)paths[i].parts,
									   paths[i].lens, paths[i].depth,
									   "*\x01"));
		}
		FUZZ_CHECK(protect_rewrite(rw, out.s, out.len, drops, nd, fake_action, NULL, &again,
					   &why) == 0);
	} else if (rc < 0) {
		FUZZ_CHECK(why != NULL);
	}
	for (size_t i = 0; i < n; i++)
		protect_path_free(&paths[i]);
	strbuf_free(&out);
	strbuf_free(&again);
	return 0;
}
