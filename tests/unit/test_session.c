/* test_session.c: what follows a session's end, for each way it can end. */
#include "unit.h"

#include "session.h"

static void test_a_stop_shuts_down_cleanly(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_STOP), SESSION_SHUT_DOWN);
}

static void test_a_fatal_error_exits(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_FATAL), SESSION_EXIT);
}

static void test_a_lost_server_reconnects_keeping_what_is_whole(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_RETRY), SESSION_RECONNECT);
}

static void test_a_kafka_refusal_reads_again_after_a_backoff(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_REWIND), SESSION_READ_AGAIN);
}

static void test_every_outcome_has_a_next_step(void **state)
{
	(void)state;
	for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++) {
		session_next n = session_next_step((outcome)e);
		assert_true(n == SESSION_SHUT_DOWN || n == SESSION_EXIT || n == SESSION_RECONNECT ||
			    n == SESSION_READ_AGAIN);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_stop_shuts_down_cleanly),
		cmocka_unit_test(test_a_fatal_error_exits),
		cmocka_unit_test(test_a_lost_server_reconnects_keeping_what_is_whole),
		cmocka_unit_test(test_a_kafka_refusal_reads_again_after_a_backoff),
		cmocka_unit_test(test_every_outcome_has_a_next_step),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
