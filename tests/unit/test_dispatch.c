/* test_dispatch.c: wal2json records and keepalives to their handlers, without Kafka. */
#include "unit.h"

#include "dispatch.h"
#include "progress.h"

/* An at-least-once relay with one outbox source and nothing else: enough for the bounds. */
typedef struct {
	relay r;
	relay_config *cfg;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char err[256];

	f->cfg = config_defaults(1, 0);
	config_set_string(&f->cfg->sources[0].table, "outbox.events");
	f->r.cfg = f->cfg;
	f->r.cur_row = NO_ROW;
	f->r.router = router_new(f->cfg, err, sizeof(err));
	assert_non_null(f->r.router);
	progress_init(&f->r.prog, 0x100);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	router_free(f->r.router);
	progress_free(&f->r.prog);
	config_free(f->cfg);
	free(f);
	return 0;
}

static outcome feed(relay *r, const char *json)
{
	pg_msg m = {.kind = 'w', .wal_start = 0x200, .wal_end = 0x300, .data = json, .len = strlen(json)};
	return dispatch_message(r, &m);
}

static void test_begin_opens_a_transaction_and_commit_closes_it(void **state)
{
	relay *r = &((fixture *)*state)->r;

	assert_int_equal(feed(r, "{\"action\":\"B\",\"xid\":700,\"nextlsn\":\"0/500\",\"timestamp\":\"2026-01-01 00:00:00.000000+00\"}"),
			 OUTCOME_OK);
	assert_true(r->in_txn);
	assert_false(r->skip_txn);
	assert_int_equal(r->txn_xid, 700);
	assert_int_equal(r->txn_end, 0x500);
	assert_true(r->txn_commit_ms > 0);
	assert_int_equal(feed(r, "{\"action\":\"C\",\"xid\":700,\"nextlsn\":\"0/500\"}"), OUTCOME_OK);
	assert_false(r->in_txn);
	assert_true(progress_idle(&r->prog));
}

static void test_a_transaction_already_acknowledged_is_skipped(void **state)
{
	relay *r = &((fixture *)*state)->r;

	assert_int_equal(feed(r, "{\"action\":\"B\",\"xid\":5,\"nextlsn\":\"0/80\"}"), OUTCOME_OK);
	assert_true(r->in_txn);
	assert_true(r->skip_txn); /* it ends at or before what was acknowledged (0/100) */
}

static void test_changes_of_other_tables_pass_without_records(void **state)
{
	relay *r = &((fixture *)*state)->r;

	feed(r, "{\"action\":\"B\",\"xid\":701,\"nextlsn\":\"0/600\"}");
	assert_int_equal(feed(r, "{\"action\":\"I\",\"schema\":\"public\",\"table\":\"users\",\"columns\":[{\"name\":\"id\",\"type\":\"integer\",\"value\":1}]}"),
			 OUTCOME_OK);
	assert_int_equal(feed(r, "{\"action\":\"U\",\"schema\":\"public\",\"table\":\"users\",\"columns\":[{\"name\":\"id\",\"type\":\"integer\",\"value\":1}]}"),
			 OUTCOME_OK);
	assert_int_equal(feed(r, "{\"action\":\"M\",\"transactional\":true,\"prefix\":\"other\",\"content\":\"x\"}"),
			 OUTCOME_OK);
	assert_int_equal(r->records_out, 0);
	assert_int_equal(r->txn_rows, 0);
}

static void test_a_malformed_record_is_fatal(void **state)
{
	relay *r = &((fixture *)*state)->r;
	assert_int_equal(feed(r, "{\"action\":"), OUTCOME_FATAL);
}

static void test_a_keepalive_moves_the_received_position_and_an_idle_relay_forward(void **state)
{
	relay *r = &((fixture *)*state)->r;
	pg_msg k = {.kind = 'k', .wal_end = 0x900};

	assert_int_equal(dispatch_message(r, &k), OUTCOME_OK);
	assert_int_equal(r->received, 0x900);
	assert_int_equal(r->wal_end_seen, 0x900);
	assert_int_equal(r->prog.acked, 0x900); /* nothing open or in flight: all of it is safe */
}

/* A transaction ending at 0/500 with one record in flight, then the server's keepalive at 0/900
 * (it has sent all WAL); returns the transaction's progress sequence. */
static uint64_t keepalive_while_in_flight(relay *r)
{
	uint64_t seq = progress_begin(&r->prog, 0x500);
	pg_msg k = {.kind = 'k', .wal_end = 0x900};

	progress_produced(&r->prog, seq);
	progress_commit(&r->prog, seq);
	assert_int_equal(dispatch_message(r, &k), OUTCOME_OK);
	assert_int_equal(r->prog.acked, 0x100); /* a record is in flight: nothing moves */
	return seq;
}

/* The server sends one keepalive when it has sent all WAL, and no other until more is written. */
static void test_a_keepalive_that_came_with_records_in_flight_moves_the_relay_forward_once_they_are_acked(void **state)
{
	relay *r = &((fixture *)*state)->r;
	uint64_t seq = keepalive_while_in_flight(r);

	progress_acked(&r->prog, seq);
	assert_int_equal(r->prog.acked, 0x500);
	dispatch_skip_idle(r);
	assert_int_equal(r->prog.acked, 0x900);
}

static void test_a_record_after_the_keepalive_keeps_the_relay_at_what_kafka_acknowledged(void **state)
{
	relay *r = &((fixture *)*state)->r;
	uint64_t seq = keepalive_while_in_flight(r);

	feed(r, "{\"action\":\"B\",\"xid\":702,\"nextlsn\":\"0/A00\"}");
	feed(r, "{\"action\":\"C\",\"xid\":702,\"nextlsn\":\"0/A00\"}");
	progress_acked(&r->prog, seq);
	dispatch_skip_idle(r);
	assert_int_equal(r->prog.acked, 0xA00); /* the transaction after the keepalive, not its walEnd */
	assert_int_equal(r->idle_end, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_begin_opens_a_transaction_and_commit_closes_it, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_transaction_already_acknowledged_is_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changes_of_other_tables_pass_without_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_malformed_record_is_fatal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_keepalive_moves_the_received_position_and_an_idle_relay_forward, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_keepalive_that_came_with_records_in_flight_moves_the_relay_forward_once_they_are_acked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_record_after_the_keepalive_keeps_the_relay_at_what_kafka_acknowledged, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
