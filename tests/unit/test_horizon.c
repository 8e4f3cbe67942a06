/* test_horizon.c: the recovery fields a checkpoint records (commit times, recent outbox xids). */
#include "unit.h"

#include "horizon.h"

#define MS 1000 /* us */

/* Reads transactions: nextlsn i*16, commit time t_ms[i], xid 100 + i, outbox when marked. */
static void read_txns(horizon *h, const int64_t *t_ms, const bool *outbox, int n)
{
	for (int i = 0; i < n; i++) {
		horizon_txn_read(h, (lsn_t)(i + 1) * 16, t_ms[i] * MS, (uint32_t)(100 + i));
		if (outbox[i])
			horizon_outbox_row(h);
	}
}

static bool has(const checkpoint_recovery *rec, uint32_t xid)
{
	for (size_t i = 0; i < rec->n_xids; i++)
		if (rec->xids[i] == xid)
			return true;
	return false;
}

static void test_lists_outbox_xids_of_the_last_window_only(void **state)
{
	(void)state;
	horizon h;
	checkpoint_recovery rec = {0};
	int64_t t[] = {1000, 1500, 2100, 2500, 2600};
	bool ob[] = {true, true, true, false, true};

	horizon_init(&h, 1000);
	read_txns(&h, t, ob, 5);
	horizon_fill(&h, 5 * 16, &rec);
	assert_int_equal(rec.commit_us, 2600 * MS);
	assert_int_equal(rec.window_ms, 1000);
	assert_false(has(&rec, 100)); /* 1000 ms: out of (1600, 2600] */
	assert_false(has(&rec, 101));
	assert_true(has(&rec, 102));
	assert_false(has(&rec, 103)); /* no outbox row: nothing to recover */
	assert_true(has(&rec, 104));
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_never_lists_a_transaction_beyond_the_checkpoint(void **state)
{
	(void)state;
	horizon h;
	checkpoint_recovery rec = {0};
	int64_t t[] = {1000, 1001, 1002};
	bool ob[] = {true, true, true};

	horizon_init(&h, 1000);
	read_txns(&h, t, ob, 3);
	horizon_fill(&h, 2 * 16, &rec);
	assert_int_equal(rec.commit_us, 1001 * MS); /* the third is not covered */
	assert_true(has(&rec, 100) && has(&rec, 101));
	assert_false(has(&rec, 102));
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_committed_entries_stay_while_in_the_window(void **state)
{
	(void)state;
	horizon h;
	checkpoint_recovery rec = {0};
	int64_t t[] = {1000, 1800};
	bool ob[] = {true, true};

	horizon_init(&h, 1000);
	read_txns(&h, t, ob, 1);
	horizon_fill(&h, 16, &rec);
	horizon_committed(&h, &rec, 16);
	horizon_txn_read(&h, 32, 1800 * MS, 101);
	horizon_outbox_row(&h);
	horizon_fill(&h, 32, &rec);
	assert_true(has(&rec, 100) && has(&rec, 101));
	horizon_committed(&h, &rec, 32);
	horizon_txn_read(&h, 48, 2500 * MS, 102); /* no outbox row, but it moves the time on */
	horizon_fill(&h, 48, &rec);
	assert_int_equal(rec.commit_us, 2500 * MS);
	assert_false(has(&rec, 100)); /* 1000 <= 1500: out */
	assert_true(has(&rec, 101));
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_rewind_forgets_what_kafka_did_not_commit(void **state)
{
	(void)state;
	horizon h;
	checkpoint_recovery rec = {0};

	horizon_init(&h, 1000);
	horizon_txn_read(&h, 16, 1000 * MS, 100);
	horizon_outbox_row(&h);
	horizon_fill(&h, 16, &rec);
	horizon_committed(&h, &rec, 16);
	horizon_txn_read(&h, 32, 1100 * MS, 101);
	horizon_outbox_row(&h);
	horizon_rewind(&h);
	/* Read again later up to a smaller position: 101 must not be listed as covered. */
	horizon_fill(&h, 16, &rec);
	assert_true(has(&rec, 100));
	assert_false(has(&rec, 101));
	assert_int_equal(rec.commit_us, 1000 * MS);
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_loaded_xids_are_kept_until_the_window_passes(void **state)
{
	(void)state;
	horizon h;
	uint32_t xids[] = {7, 8};
	checkpoint_recovery stored = {.commit_us = 5000 * MS, .window_ms = 1000, .xids = xids, .n_xids = 2};
	checkpoint_recovery rec = {0};

	horizon_init(&h, 1000);
	horizon_load(&h, &stored, 64);
	horizon_fill(&h, 64, &rec);
	assert_int_equal(rec.commit_us, 5000 * MS);
	assert_true(has(&rec, 7) && has(&rec, 8));
	horizon_txn_read(&h, 80, 5900 * MS, 9);
	horizon_fill(&h, 80, &rec);
	assert_true(has(&rec, 7)); /* their time is taken as 5000: still in (4900, 5900] */
	horizon_txn_read(&h, 96, 6100 * MS, 10);
	horizon_fill(&h, 96, &rec);
	assert_false(has(&rec, 7) || has(&rec, 8));
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_measures_commit_time_disorder(void **state)
{
	(void)state;
	horizon h;

	horizon_init(&h, 1000);
	horizon_txn_read(&h, 16, 1000 * MS, 1);
	horizon_txn_read(&h, 32, 1003 * MS, 2);
	horizon_txn_read(&h, 48, 1001 * MS, 3); /* 2 ms behind the newest */
	horizon_txn_read(&h, 64, 0, 4);         /* unknown: not a disorder */
	assert_int_equal(h.max_disorder_us, 2 * MS);
	horizon_free(&h);
}

static void test_checkpoint_carries_the_recovery_fields(void **state)
{
	(void)state;
	uint32_t xids[] = {746, 4294967295u};
	checkpoint cp = {.lsn = 0x1938FD8}, back;
	checkpoint_recovery rec = {.commit_us = 1796227714038313LL, .window_ms = 1000, .xids = xids,
				   .n_xids = 2, .backfill = "{\"reason\":\"slot lost\",\"done\":true,\"rows\":40}"};
	checkpoint_recovery got = {0};
	char *text = checkpoint_encode_with(&cp, &rec, "s");

	assert_string_equal(text, "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/1938FD8\",\"commit_time_us\":"
				  "1796227714038313,\"window_ms\":1000,\"xids\":[746,4294967295],"
				  "\"backfill\":{\"reason\":\"slot lost\",\"done\":true,\"rows\":40}}");
	assert_int_equal(checkpoint_decode_with(text, strlen(text), &back, &got), 0);
	assert_int_equal(got.commit_us, rec.commit_us);
	assert_int_equal(got.n_xids, 2);
	assert_int_equal(got.xids[1], 4294967295u);
	assert_string_equal(got.backfill, rec.backfill);
	checkpoint_recovery_free(&got);
	free(text);
}

static void test_checkpoint_refuses_malformed_recovery_fields(void **state)
{
	(void)state;
	checkpoint cp;
	checkpoint_recovery got = {0};
	const char *bad[] = {
		"{\"lsn\":\"0/1\",\"commit_time_us\":5,\"window_ms\":1000,\"xids\":[4294967296]}",
		"{\"lsn\":\"0/1\",\"commit_time_us\":5,\"window_ms\":1000,\"xids\":[-1]}",
		"{\"lsn\":\"0/1\",\"commit_time_us\":5,\"window_ms\":1000}",
		"{\"lsn\":\"0/1\",\"commit_time_us\":\"5\",\"window_ms\":1000,\"xids\":[]}",
		"{\"lsn\":\"0/1\",\"backfill\":[1]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(checkpoint_decode_with(bad[i], strlen(bad[i]), &cp, &got), -1);
	/* An older relay's checkpoint has none of them: fine, with nothing recorded. */
	assert_int_equal(checkpoint_decode_with("{\"lsn\":\"0/1\"}", 13, &cp, &got), 0);
	assert_int_equal(got.commit_us, 0);
	checkpoint_recovery_free(&got);
}

/* The end recorded for xid in rec, or 0 when it is not listed (or ends are not recorded). */
static lsn_t end_of(const checkpoint_recovery *rec, uint32_t xid)
{
	for (size_t i = 0; rec->ends && i < rec->n_xids; i++)
		if (rec->xids[i] == xid)
			return rec->ends[i];
	return 0;
}

static void test_records_each_xids_end_and_where_the_list_is_complete(void **state)
{
	(void)state;
	horizon h;
	checkpoint_recovery rec = {0};
	int64_t t[] = {1000, 1500, 2100, 2500, 2600};
	bool ob[] = {true, true, true, false, true};

	horizon_init(&h, 1000);
	horizon_load(&h, NULL, 8); /* streaming from 8: nothing known before it */
	read_txns(&h, t, ob, 5);
	horizon_fill(&h, 5 * 16, &rec);
	assert_non_null(rec.ends);
	assert_int_equal(end_of(&rec, 102), 3 * 16);
	assert_int_equal(end_of(&rec, 104), 5 * 16);
	/* 100 and 101 left the window: below the end of 101 the list may miss some. */
	assert_int_equal(rec.xids_after, 2 * 16);
	horizon_committed(&h, &rec, 5 * 16);
	assert_int_equal(h.xids_after, 2 * 16);
	/* Nothing left the window: the start stays the bound. */
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
	horizon_init(&h, 1000);
	horizon_load(&h, NULL, 8);
	read_txns(&h, t + 2, ob + 2, 3);
	horizon_fill(&h, 3 * 16, &rec);
	assert_int_equal(rec.xids_after, 8);
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_loaded_ends_come_back(void **state)
{
	(void)state;
	horizon h;
	uint32_t xids[] = {7, 8};
	lsn_t ends[] = {40, 56};
	checkpoint_recovery stored = {.commit_us = 5000 * MS, .window_ms = 1000, .xids = xids,
				      .n_xids = 2, .ends = ends, .xids_after = 24};
	checkpoint_recovery rec = {0};

	horizon_init(&h, 1000);
	horizon_load(&h, &stored, 64);
	horizon_txn_read(&h, 80, 5500 * MS, 9);
	horizon_outbox_row(&h);
	horizon_fill(&h, 80, &rec);
	assert_int_equal(end_of(&rec, 7), 40);
	assert_int_equal(end_of(&rec, 8), 56);
	assert_int_equal(end_of(&rec, 9), 80);
	assert_int_equal(rec.xids_after, 24);
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

static void test_no_ends_while_some_are_unknown(void **state)
{
	(void)state;
	horizon h;
	uint32_t xids[] = {7, 8};
	/* An older relay's checkpoint, or a backfill's xids: their ends are not known. */
	checkpoint_recovery stored = {.commit_us = 5000 * MS, .window_ms = 1000, .xids = xids, .n_xids = 2};
	checkpoint_recovery rec = {0};

	horizon_init(&h, 1000);
	horizon_load(&h, &stored, 64);
	horizon_txn_read(&h, 80, 5500 * MS, 9);
	horizon_outbox_row(&h);
	horizon_fill(&h, 80, &rec);
	assert_int_equal(rec.n_xids, 3);
	assert_null(rec.ends);
	assert_int_equal(rec.xids_after, 64); /* not recorded: the loaded position is the bound */
	horizon_committed(&h, &rec, 80);
	/* Once they left the window, every listed end is known again. */
	horizon_txn_read(&h, 96, 6100 * MS, 10);
	horizon_outbox_row(&h);
	horizon_fill(&h, 96, &rec);
	assert_non_null(rec.ends);
	assert_int_equal(rec.n_xids, 2);
	assert_int_equal(end_of(&rec, 9), 80);
	assert_int_equal(end_of(&rec, 10), 96);
	assert_int_equal(rec.xids_after, 64);
	checkpoint_recovery_free(&rec);
	horizon_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lists_outbox_xids_of_the_last_window_only),
		cmocka_unit_test(test_records_each_xids_end_and_where_the_list_is_complete),
		cmocka_unit_test(test_loaded_ends_come_back),
		cmocka_unit_test(test_no_ends_while_some_are_unknown),
		cmocka_unit_test(test_never_lists_a_transaction_beyond_the_checkpoint),
		cmocka_unit_test(test_committed_entries_stay_while_in_the_window),
		cmocka_unit_test(test_rewind_forgets_what_kafka_did_not_commit),
		cmocka_unit_test(test_loaded_xids_are_kept_until_the_window_passes),
		cmocka_unit_test(test_measures_commit_time_disorder),
		cmocka_unit_test(test_checkpoint_carries_the_recovery_fields),
		cmocka_unit_test(test_checkpoint_refuses_malformed_recovery_fields),
	};
	return cmocka_run_group_tests_name("horizon", tests, NULL, NULL);
}
