/* test_standby_gate.c: which flush position enough of the named standbys have reached. */
#include "unit.h"

#include "standby_gate.h"

/* ANY 1 of two: whichever has more. */
static void test_one_of_two_is_the_highest_flush(void **state)
{
	(void)state;
	lsn_t f[] = {0x3000, 0x5000};
	assert_int_equal(standby_gate_quorum(f, 2, 1), 0x5000);
}

/* All of them: the one furthest behind. */
static void test_all_of_them_is_the_lowest_flush(void **state)
{
	(void)state;
	lsn_t f[] = {0x5000, 0x3000, 0x4000};
	assert_int_equal(standby_gate_quorum(f, 3, 3), 0x3000);
}

/* ANY 2 of three: the second furthest ahead. */
static void test_two_of_three_is_the_second_highest(void **state)
{
	(void)state;
	lsn_t f[] = {0x3000, 0x5000, 0x4000};
	assert_int_equal(standby_gate_quorum(f, 3, 2), 0x4000);
}

/* Fewer connected than the count: nothing counts as flushed. */
static void test_fewer_standbys_connected_than_needed_covers_nothing(void **state)
{
	(void)state;
	lsn_t f[] = {0x5000};
	assert_int_equal(standby_gate_quorum(f, 1, 2), LSN_INVALID);
	assert_int_equal(standby_gate_quorum(f, 0, 1), LSN_INVALID);
}

/* A standby that reports no flush position yet holds nothing. */
static void test_a_standby_without_a_flush_position_counts_as_nothing_flushed(void **state)
{
	(void)state;
	lsn_t f[] = {LSN_INVALID, 0x5000};
	assert_int_equal(standby_gate_quorum(f, 2, 2), LSN_INVALID);
}

/* Without names the gate is off: any position may be committed, and no server is asked. */
static void test_without_names_every_position_is_open(void **state)
{
	(void)state;
	relay_config cfg = {0};
	char err[64];
	bool fatal;
	gate_server srv = {"nowhere", NULL, "1", 0};
	standby_gate *g = standby_gate_new();

	assert_false(standby_gate_on(&cfg));
	assert_int_equal(standby_gate_check(g, &cfg, &srv, 0xFFFFFF, &fatal, err, sizeof(err)),
			 GATE_OPEN);
	standby_gate_free(g);
}

/* A server that cannot be asked is an error, never an open gate. */
static void test_an_unreachable_server_closes_the_gate(void **state)
{
	(void)state;
	char *names[] = {"pg2", NULL};
	relay_config cfg = {.pg_conninfo = "dbname=x connect_timeout=1", .wait_for_standbys = names,
			    .n_wait_for_standbys = 1, .wait_for_standbys_count = 1};
	char err[512];
	bool fatal;
	gate_server srv = {"/nonexistent-socket-dir", NULL, "1", 0};
	standby_gate *g = standby_gate_new();

	assert_int_equal(standby_gate_check(g, &cfg, &srv, 0x10, &fatal, err, sizeof(err)), GATE_ERROR);
	assert_false(fatal);
	assert_non_null(strstr(err, "postgresql.wait_for_standbys"));
	assert_null(strchr(err, '\n')); /* one log line */
	standby_gate_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_of_two_is_the_highest_flush),
		cmocka_unit_test(test_all_of_them_is_the_lowest_flush),
		cmocka_unit_test(test_two_of_three_is_the_second_highest),
		cmocka_unit_test(test_fewer_standbys_connected_than_needed_covers_nothing),
		cmocka_unit_test(test_a_standby_without_a_flush_position_counts_as_nothing_flushed),
		cmocka_unit_test(test_without_names_every_position_is_open),
		cmocka_unit_test(test_an_unreachable_server_closes_the_gate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
