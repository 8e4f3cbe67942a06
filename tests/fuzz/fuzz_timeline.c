/* fuzz_timeline.c: libFuzzer target for timeline_switchpoint (relay/timeline.c), the parser of the history files a server sends, and the cut at the fork it finds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "timeline.h"

/* The history's own timeline and the one looked up come from the input's first bytes. */
static uint32_t take_u32(const uint8_t **data, size_t *size)
{
	uint32_t v = 0;
	for (int i = 0; i < 4 && *size > 0; i++, (*data)++, (*size)--)
		v = (v << 8) | **data;
	return v;
}

/* A checkpoint at lsn listing n xids whose ends ascend up to it; the cut must keep what it says. */
static void check_cut(lsn_t fork, lsn_t lsn, uint32_t n)
{
	checkpoint cp = {.lsn = lsn, .tli = 1};
	checkpoint_recovery rec = {.commit_us = 1, .window_ms = 1000, .n_xids = n % 8};
	timeline_phantoms ph;

	rec.xids = calloc(rec.n_xids + 1, sizeof(uint32_t));
	rec.ends = calloc(rec.n_xids + 1, sizeof(lsn_t));
	for (size_t i = 0; i < rec.n_xids; i++) {
		rec.xids[i] = (uint32_t)(n + i);
		rec.ends[i] = lsn / (rec.n_xids + 1) * (i + 1);
	}
	bool beyond = timeline_cut(&cp, &rec, fork, &ph);
	FUZZ_CHECK(beyond == (lsn > fork));
	FUZZ_CHECK(cp.lsn <= fork || !beyond);
	for (size_t i = 0; i < rec.n_xids; i++)
		FUZZ_CHECK(rec.ends[i] <= cp.lsn);
	for (size_t i = 0; i + 1 < ph.n_xids; i++)
		FUZZ_CHECK(ph.xids[i] < ph.xids[i + 1]);
	timeline_phantoms_free(&ph);
	checkpoint_recovery_free(&rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint32_t current = take_u32(&data, &size), tli = take_u32(&data, &size);
	lsn_t end = 0, again = 0;
	/* An exact-size copy: ASan sees any read past the text (it has no terminator). */
	char *text = malloc(size ? size : 1);

	FUZZ_CHECK(text != NULL);
	memcpy(text, data, size);
	timeline_found f = timeline_switchpoint(text, size, current, tli, &end);
	FUZZ_CHECK(f == TIMELINE_ANCESTOR || f == TIMELINE_NOT_ANCESTOR || f == TIMELINE_MALFORMED);
	if (f == TIMELINE_ANCESTOR) {
		/* Only an older timeline is an ancestor, and the answer does not change. */
		FUZZ_CHECK(tli > 0 && tli < current);
		FUZZ_CHECK(timeline_switchpoint(text, size, current, tli, &again) == TIMELINE_ANCESTOR);
		FUZZ_CHECK(again == end);
		check_cut(end, end + (current & 0xFFFF), current);
	}
	if (f != TIMELINE_MALFORMED && size > 0 && memchr(text, '\n', size) == NULL) {
		/* A final newline is optional: with one added, the file reads the same. */
		char *nl = malloc(size + 1);
		FUZZ_CHECK(nl != NULL);
		memcpy(nl, text, size);
		nl[size] = '\n';
		FUZZ_CHECK(timeline_switchpoint(nl, size + 1, current, tli, &again) == f);
		free(nl);
	}
	free(text);
	return 0;
}
