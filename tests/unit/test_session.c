/* test_session.c: what follows a session's end, for each way it can end and who else is on the slot. */
#include "unit.h"

#include "session.h"

/* A relay alone on its slot, with relay.takeover = "fence" (the default). */
static const session_facts alone = {.fenced = false, .lock_lost = false, .wait = false};

static void test_a_stop_shuts_down_cleanly(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_STOP, alone), SESSION_SHUT_DOWN);
}

static void test_a_fatal_error_exits(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_FATAL, alone), SESSION_EXIT);
}

static void test_a_lost_server_reconnects_keeping_what_is_whole(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_RETRY, alone), SESSION_RECONNECT);
}

static void test_a_kafka_refusal_reads_again_after_a_backoff(void **state)
{
	(void)state;
	assert_int_equal(session_next_step(OUTCOME_REWIND, alone), SESSION_READ_AGAIN);
}

static void test_every_outcome_has_a_next_step(void **state)
{
	(void)state;
	for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++) {
		session_next n = session_next_step((outcome)e, alone);
		assert_true(n == SESSION_SHUT_DOWN || n == SESSION_EXIT || n == SESSION_RECONNECT ||
			    n == SESSION_READ_AGAIN);
	}
}

/* "fence": a fenced relay exits (3), whatever the session ended with: nothing can commit. */
static void test_fenced_with_fence_exits_whatever_the_outcome(void **state)
{
	(void)state;
	session_facts f = {.fenced = true};
	for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++)
		assert_int_equal(session_next_step((outcome)e, f),
				 e == OUTCOME_STOP ? SESSION_SHUT_DOWN : SESSION_EXIT);
}

/* "wait": fenced, or the lock taken by another relay: stand by again, never exit. */
static void test_the_loser_with_wait_stands_by_again(void **state)
{
	(void)state;
	session_facts fenced = {.fenced = true, .wait = true};
	session_facts busy = {.lock_lost = true, .wait = true};
	for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++) {
		session_next want = e == OUTCOME_STOP ? SESSION_SHUT_DOWN : SESSION_STAND_BY;
		assert_int_equal(session_next_step((outcome)e, fenced), want);
		assert_int_equal(session_next_step((outcome)e, busy), want);
	}
}

/* "wait" changes nothing for a relay alone on its slot: a real error still exits (1). */
static void test_wait_alone_behaves_as_fence(void **state)
{
	(void)state;
	session_facts f = {.wait = true};
	for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++)
		assert_int_equal(session_next_step((outcome)e, f), session_next_step((outcome)e, alone));
}

/* The broker's own abort of a transaction that outlived transaction.timeout.ms ends the
 * producer (fenced, or an invalid state): no other relay is there, so the relay starts over,
 * with either setting; a stop still stops. */
static void test_a_producer_ended_by_the_brokers_abort_of_an_expired_transaction_starts_over(void **state)
{
	(void)state;
	for (int wait = 0; wait <= 1; wait++) {
		for (int fenced = 0; fenced <= 1; fenced++) {
			session_facts f = {.fenced = fenced, .expired = true, .wait = wait};
			for (int e = OUTCOME_OK; e <= OUTCOME_FATAL; e++)
				assert_int_equal(session_next_step((outcome)e, f),
						 e == OUTCOME_STOP ? SESSION_SHUT_DOWN : SESSION_START_OVER);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_stop_shuts_down_cleanly),
		cmocka_unit_test(test_a_producer_ended_by_the_brokers_abort_of_an_expired_transaction_starts_over),
		cmocka_unit_test(test_a_fatal_error_exits),
		cmocka_unit_test(test_a_lost_server_reconnects_keeping_what_is_whole),
		cmocka_unit_test(test_a_kafka_refusal_reads_again_after_a_backoff),
		cmocka_unit_test(test_every_outcome_has_a_next_step),
		cmocka_unit_test(test_fenced_with_fence_exits_whatever_the_outcome),
		cmocka_unit_test(test_the_loser_with_wait_stands_by_again),
		cmocka_unit_test(test_wait_alone_behaves_as_fence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
