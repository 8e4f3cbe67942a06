/* test_txctx.c: the transaction context: header values, counts per topic, BEGIN/END text, restore. */
#include "unit.h"

#include "txctx.h"

/* A transaction as the B record gives it. */
static void begin(txctx *t)
{
	memset(t, 0, sizeof(*t));
	txctx_begin(t, 4242, 0x16B3748, 1700000000123);
}

static void test_headers_give_xid_commit_lsn_and_the_index_so_far(void **state)
{
	(void)state;
	txctx t;
	txctx_headers h;

	begin(&t);
	txctx_peek(&t, &h);
	assert_string_equal(h.xid, "4242");
	assert_string_equal(h.lsn, "0/16B3748");
	assert_string_equal(h.index, "0");
	txctx_count(&t, "a");
	txctx_count(&t, "b");
	txctx_peek(&t, &h);
	assert_string_equal(h.index, "2");
	txctx_peek(&t, &h); /* peeking does not count */
	assert_string_equal(h.index, "2");
	txctx_begin(&t, UINT64_MAX, 0, 0); /* the next transaction starts at 0 */
	txctx_peek(&t, &h);
	assert_string_equal(h.xid, "18446744073709551615");
	assert_string_equal(h.index, "0");
	assert_int_equal(t.n_topics, 0);
	txctx_free(&t);
}

static void test_end_counts_each_topic_in_first_use_order(void **state)
{
	(void)state;
	txctx t;
	strbuf b = {0};

	begin(&t);
	txctx_begin_json(&t, &b);
	assert_string_equal(strbuf_str(&b),
			    "{\"status\":\"BEGIN\",\"id\":\"4242:0/16B3748\",\"xid\":4242,"
			    "\"commit_lsn\":\"0/16B3748\",\"ts_ms\":1700000000123,"
			    "\"event_count\":null,\"data_collections\":null}");
	strbuf_reset(&b);
	for (int i = 0; i < 5; i++)
		txctx_count(&t, i % 2 ? "p.order" : "p.user");
	txctx_count(&t, "dlq");
	txctx_end_json(&t, &b);
	assert_string_equal(strbuf_str(&b),
			    "{\"status\":\"END\",\"id\":\"4242:0/16B3748\",\"xid\":4242,"
			    "\"commit_lsn\":\"0/16B3748\",\"ts_ms\":1700000000123,\"event_count\":6,"
			    "\"data_collections\":[{\"data_collection\":\"p.user\",\"event_count\":3},"
			    "{\"data_collection\":\"p.order\",\"event_count\":2},"
			    "{\"data_collection\":\"dlq\",\"event_count\":1}]}");
	strbuf_free(&b);
	txctx_free(&t);
}

static void test_counts_survive_a_checkpoint_round_trip(void **state)
{
	(void)state;
	txctx t, u;
	txctx_headers h;
	char *json;

	begin(&t);
	txctx_count(&t, "p.user");
	txctx_count(&t, "p.user");
	txctx_count(&t, "dlq");
	t.begin_sent = true;
	json = txctx_counts_json(&t, 5);
	assert_string_equal(json, "{\"records\":3,\"rows\":5,\"begun\":true,"
				  "\"topics\":{\"p.user\":2,\"dlq\":1}}");
	begin(&u);
	assert_int_equal(txctx_restore(&u, json, 4), -1); /* another part's counts */
	assert_true(u.uncounted);
	assert_null(txctx_counts_json(&u, 4)); /* nothing kept that would pass for the whole */
	assert_int_equal(txctx_restore(&u, json, 5), 0);
	assert_false(u.uncounted);
	assert_true(u.begun); /* its BEGIN went out with the first part */
	txctx_peek(&u, &h);
	assert_string_equal(h.index, "3");
	txctx_count(&u, "p.user");
	assert_int_equal(u.n_topics, 2);
	assert_int_equal(u.topics[0].n, 3);
	free(json);
	txctx_free(&t);
	txctx_free(&u);
}

static void test_restore_refuses_counts_that_do_not_add_up(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"records\":3,\"rows\":3,\"begun\":true,\"topics\":{\"a\":1}}",
		"{\"records\":-1,\"rows\":3,\"begun\":true,\"topics\":{}}",
		"{\"records\":1,\"rows\":3,\"begun\":true,\"topics\":{\"a\":\"1\"}}", "{\"records\":1,\"rows\":3}",
		"[]", "not json", "{\"records\":1,\"rows\":3,\"begun\":true,\"topics\":{\"a\":-1,\"b\":2}}",
		"{\"records\":1,\"topics\":{\"a\":1}}", /* no rows */
		"{\"records\":1,\"rows\":-3,\"begun\":true,\"topics\":{\"a\":1}}",
		/* two counts whose sum wraps around to records */
		"{\"records\":0,\"rows\":3,\"begun\":true,\"topics\":{\"a\":9223372036854775807,"
		"\"b\":9223372036854775807,\"c\":2}}",
	};
	txctx t;

	begin(&t);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(txctx_counts_valid(bad[i], NULL));
		assert_int_equal(txctx_restore(&t, bad[i], 3), -1);
		assert_int_equal(t.records, 0);
		assert_int_equal(t.n_topics, 0);
		assert_false(t.begun);
	}
	assert_int_equal(txctx_restore(&t, NULL, 3), 0); /* nothing kept: counted from 0, not kept */
	assert_false(t.begun);
	txctx_free(&t);
}

static void test_a_begin_that_did_not_go_out_is_sent_after_a_restart(void **state)
{
	(void)state;
	txctx t;

	begin(&t);
	/* The first part went out with the transaction topic off: its BEGIN was not sent. */
	assert_int_equal(txctx_restore(&t, "{\"records\":2,\"rows\":2,\"begun\":false,"
					   "\"topics\":{\"a\":2}}", 2), 0);
	assert_false(t.begun); /* the next record sends it, if the topic is on now */
	assert_false(t.begin_sent);
	assert_int_equal(t.records, 2);
	/* Counts without "begun" are not ones this relay writes. */
	assert_false(txctx_counts_valid("{\"records\":2,\"rows\":2,\"topics\":{\"a\":2}}", NULL));
	txctx_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_headers_give_xid_commit_lsn_and_the_index_so_far),
		cmocka_unit_test(test_end_counts_each_topic_in_first_use_order),
		cmocka_unit_test(test_counts_survive_a_checkpoint_round_trip),
		cmocka_unit_test(test_restore_refuses_counts_that_do_not_add_up),
		cmocka_unit_test(test_a_begin_that_did_not_go_out_is_sent_after_a_restart),
	};
	return cmocka_run_group_tests_name("txctx", tests, NULL, NULL);
}
