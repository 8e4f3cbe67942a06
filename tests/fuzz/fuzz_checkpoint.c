/* fuzz_checkpoint.c: libFuzzer target for checkpoint_decode_with (relay/checkpoint.c), the backfill state and the transaction counts it carries, with an encode round trip (timeline and xid ends included). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backfill.h"
#include "checkpoint.h"
#include "fuzz.h"
#include "txctx.h"

/* A stored backfill state is parsed at start: it may be refused, never crash. */
static void load_backfill(const char *json)
{
	relay_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	backfill *b = backfill_new(&cfg);
	if (backfill_load(b, json) == 0) {
		char *again = backfill_state_json(b);
		FUZZ_CHECK(again != NULL && backfill_load(b, again) == 0);
		free(again);
	}
	backfill_free(b);
}

/*
 * A split transaction's counts that decoding kept are valid: they restore at its B record for
 * the rows they name, round-trip, and refuse any other number of rows without counting.
 */
static void load_counts(const char *json)
{
	uint64_t rows = 0;
	txctx t, u;

	memset(&t, 0, sizeof(t));
	memset(&u, 0, sizeof(u));
	FUZZ_CHECK(txctx_counts_valid(json, &rows) && txctx_restore(&t, json, rows) == 0 && !t.uncounted);
	char *again = txctx_counts_json(&t, rows);
	FUZZ_CHECK(again != NULL && txctx_restore(&u, again, rows) == 0 && u.records == t.records &&
		   u.n_topics == t.n_topics && u.begun == t.begin_sent &&
		   u.begin_sent == t.begin_sent);
	FUZZ_CHECK(txctx_restore(&u, again, rows + 1) == -1 && u.records == 0 && u.n_topics == 0 &&
		   !u.begun && u.uncounted);
	free(again);
	txctx_free(&t);
	txctx_free(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	checkpoint cp, again;
	checkpoint_recovery rec = {0}, rec2 = {0};
	char *text;

	if (checkpoint_decode_with((const char *)data, size, &cp, &rec) < 0)
		return 0;
	/* What the relay writes for a decoded checkpoint must read back as the same one. */
	text = checkpoint_encode_with(&cp, &rec, "s");
	FUZZ_CHECK(text != NULL);
	FUZZ_CHECK(checkpoint_decode_with(text, strlen(text), &again, &rec2) == 0);
	FUZZ_CHECK(again.lsn == cp.lsn && again.partial_nextlsn == cp.partial_nextlsn);
	FUZZ_CHECK(again.tli == cp.tli);
	if (cp.partial_nextlsn != LSN_INVALID)
		FUZZ_CHECK(again.partial_rows == cp.partial_rows);
	FUZZ_CHECK(rec2.commit_us == rec.commit_us && rec2.creating == rec.creating);
	if (rec.commit_us > 0) {
		FUZZ_CHECK(rec2.n_xids == rec.n_xids && rec2.window_ms == rec.window_ms);
		FUZZ_CHECK(rec.n_xids == 0 || memcmp(rec2.xids, rec.xids, rec.n_xids * sizeof(uint32_t)) == 0);
		/* Decoded ends ascend up to lsn, so they are always stored again, the same. */
		FUZZ_CHECK((rec.ends == NULL) == (rec2.ends == NULL) && rec2.xids_after == rec.xids_after);
		for (size_t i = 0; rec.ends && i < rec.n_xids; i++)
			FUZZ_CHECK(rec2.ends[i] == rec.ends[i] && rec.ends[i] <= cp.lsn &&
				   (i == 0 || rec.ends[i - 1] <= rec.ends[i]));
	}
	FUZZ_CHECK((rec.backfill == NULL) == (rec2.backfill == NULL));
	if (rec.backfill)
		load_backfill(rec.backfill);
	FUZZ_CHECK((rec.txn_counts == NULL) == (rec2.txn_counts == NULL) && !rec2.txn_counts_bad);
	FUZZ_CHECK(!(rec.txn_counts && rec.txn_counts_bad));
	if (rec.txn_counts)
		load_counts(rec.txn_counts);
	checkpoint_recovery_free(&rec);
	checkpoint_recovery_free(&rec2);
	free(text);
	return 0;
}
