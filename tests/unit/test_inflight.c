/* test_inflight.c: the in-flight table, the pending metrics of a Kafka transaction, refusals. */
#include "unit.h"

#include "inflight.h"
#include "pending.h"
#include "refusal.h"

static void test_slots_are_reused_and_the_table_grows_only_past_its_peak(void **state)
{
	(void)state;
	in_flight_table t = {0};
	uint32_t a = inflight_take(&t), b = inflight_take(&t);

	assert_int_not_equal(a, b);
	assert_int_equal(t.cap, 1024);
	inflight_give(&t, a);
	assert_int_equal(inflight_take(&t), a);
	for (int i = 0; i < 1022; i++)
		inflight_take(&t);
	assert_int_equal(t.cap, 1024);
	assert_int_equal(t.n_free, 0);
	uint32_t c = inflight_take(&t);
	assert_int_equal(t.cap, 2048);
	assert_true(c >= 1024 && c < 2048);
	inflight_free(&t);
	assert_null(t.slots);
	assert_int_equal(t.cap, 0);
}

static void test_every_slot_id_is_unique_while_taken(void **state)
{
	(void)state;
	in_flight_table t = {0};
	static bool seen[4096];

	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 3000; i++) {
		uint32_t id = inflight_take(&t);
		assert_true(id < t.cap);
		assert_false(seen[id]);
		seen[id] = true;
	}
	inflight_free(&t);
}

static void test_held_bytes_count_key_value_headers_and_overhead(void **state)
{
	(void)state;
	route_header h = {.name = "n", .name_len = 1, .value = "vv", .value_len = 2};
	route_msg m = {.key = "k", .key_len = 1, .value = "value", .value_len = 5, .headers = &h,
		       .n_headers = 1};
	route_msg bare = {.key = "k", .key_len = 1, .value = "value", .value_len = 5};

	assert_true(inflight_record_held(&bare) > 6);
	assert_true(inflight_record_held(&m) > inflight_record_held(&bare) + 3);
}

static void test_pending_records_count_only_when_published(void **state)
{
	(void)state;
	eos_pending_metrics p = {0};
	in_flight f = {.topic = 1, .bytes = 10, .start_ms = 1000};

	pending_add(&p, &f);
	pending_add(&p, &f);
	f.start_ms = 2000;
	f.dead_letter = true;
	pending_add(&p, &f);
	assert_true(p.any);
	assert_int_equal(p.records[1], 3);
	assert_int_equal(p.bytes[1], 30);
	assert_int_equal(p.dead_letters, 1);
	assert_int_equal(p.n_runs, 2); /* one latency run per start time, in produce order */
	assert_int_equal(p.runs[0].n, 2);
	pending_drop(&p);
	assert_false(p.any);
	assert_int_equal(p.records[1], 0);
	assert_int_equal(p.n_runs, 0);
	pending_free(&p);
	assert_null(p.runs);
}

static void test_size_refusals_of_source_rows_start_a_search_in_dead_letter_mode(void **state)
{
	(void)state;
	broker_refusal b = {0};
	in_flight row = {.txn_end = 0x500, .row = 3};
	in_flight dead = {.txn_end = 0x500, .row = NO_ROW, .dead_letter = true};

	refusal_note(&b, false, &row, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE); /* on_error = stop */
	assert_false(b.searching);
	refusal_note(&b, true, &dead, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	assert_false(b.searching);
	refusal_note(&b, true, &row, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
	assert_false(b.searching);
	refusal_note(&b, true, &row, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	assert_true(b.searching);
	assert_int_equal(b.seen_end, 0x500);
	assert_int_equal(b.txn_end, 0); /* in a batch: which row is not known yet */
	assert_false(refusal_is_row(&b, 0x500, 3));
}

static void test_a_record_refused_alone_names_its_row(void **state)
{
	(void)state;
	broker_refusal b = {0};
	in_flight alone = {.txn_end = 0x700, .row = 2, .alone = true};

	refusal_note(&b, true, &alone, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	assert_true(refusal_is_row(&b, 0x700, 2));
	assert_false(refusal_is_row(&b, 0x700, 1));
	assert_false(refusal_is_row(&b, 0x800, 2));
	/* A size refusal while searching is read again; outside a search it stops the relay. */
	assert_false(refusal_delivery_fatal(&b, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
	assert_true(refusal_delivery_fatal(&b, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
	broker_refusal none = {0};
	assert_true(refusal_delivery_fatal(&none, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
	assert_false(refusal_delivery_fatal(&none, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT));
}

static void test_a_search_ends_once_the_stream_passes_the_refused_transactions(void **state)
{
	(void)state;
	broker_refusal b = {0};
	in_flight row = {.txn_end = 0x500, .row = 0};

	refusal_note(&b, true, &row, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
	refusal_search_over(&b, 0x500, false);
	assert_true(b.searching);
	refusal_search_over(&b, 0x600, true); /* a delivery failed meanwhile: not over */
	assert_true(b.searching);
	refusal_search_over(&b, 0x600, false);
	assert_false(b.searching);
}

static void test_only_a_half_sent_key_change_and_a_dead_letter_stop_the_relay(void **state)
{
	(void)state;
	const char *why = NULL;

	assert_true(refusal_dead_letters(REFUSED_OUTBOX_ROW, &why));
	assert_true(refusal_dead_letters(REFUSED_CHANGE, &why));
	assert_true(refusal_dead_letters(REFUSED_KEY_CHANGE_WHOLE, &why));
	assert_true(refusal_dead_letters(REFUSED_SNAPSHOT_ROW, &why));
	assert_null(why);
	assert_false(refusal_dead_letters(REFUSED_KEY_CHANGE_PART, &why));
	assert_non_null(strstr(why, "went out already"));
	assert_false(refusal_dead_letters(REFUSED_DEAD_LETTER, &why));
	assert_non_null(strstr(why, "dead-letter topic"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_slots_are_reused_and_the_table_grows_only_past_its_peak),
		cmocka_unit_test(test_every_slot_id_is_unique_while_taken),
		cmocka_unit_test(test_held_bytes_count_key_value_headers_and_overhead),
		cmocka_unit_test(test_pending_records_count_only_when_published),
		cmocka_unit_test(test_size_refusals_of_source_rows_start_a_search_in_dead_letter_mode),
		cmocka_unit_test(test_a_record_refused_alone_names_its_row),
		cmocka_unit_test(test_a_search_ends_once_the_stream_passes_the_refused_transactions),
		cmocka_unit_test(test_only_a_half_sent_key_change_and_a_dead_letter_stop_the_relay),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
