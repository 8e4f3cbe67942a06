/* test_commit_policy.c: when the open Kafka transaction commits, case by case. */
#include "unit.h"

#include "commit_policy.h"

static const commit_limits LIM = {.max_records = 100, .max_ms = 50};

/* An open transaction, young, small, read live, between PostgreSQL transactions, input busy. */
static commit_facts open_txn(void)
{
	commit_facts f = {.open = true, .records = 1, .age_ms = 0, .behind_ms = 0};
	return f;
}

static void test_nothing_is_due_without_an_open_transaction(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.open = false;
	f.records = 1000;
	f.age_ms = 100000;
	f.input_idle = true;
	assert_false(commit_policy_due(&f, &LIM));
}

static void test_an_unfinished_group_is_never_committed(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.holding = true;
	f.records = 1000;
	f.age_ms = 100000;
	f.input_idle = true;
	f.split_end = true;
	assert_false(commit_policy_due(&f, &LIM));
}

static void test_record_bound_commits_even_inside_a_postgres_transaction(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.in_pg_txn = true;
	f.records = 99;
	assert_false(commit_policy_due(&f, &LIM));
	f.records = 100;
	assert_true(commit_policy_due(&f, &LIM));
	f.behind_ms = 60000; /* catching up does not stretch the size bound */
	assert_true(commit_policy_due(&f, &LIM));
}

static void test_age_commits_between_transactions_and_inside_one_only_when_very_old(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.age_ms = 49;
	assert_false(commit_policy_due(&f, &LIM));
	f.age_ms = 50;
	assert_true(commit_policy_due(&f, &LIM));
	f.in_pg_txn = true;
	assert_false(commit_policy_due(&f, &LIM));
	f.age_ms = COMMIT_SPLIT_AGE_MS;
	assert_true(commit_policy_due(&f, &LIM));
}

static void test_idle_input_commits_only_between_transactions(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.input_idle = true;
	assert_true(commit_policy_due(&f, &LIM));
	f.in_pg_txn = true;
	assert_false(commit_policy_due(&f, &LIM));
}

static void test_catching_up_stretches_a_transaction_due_by_age_alone(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.age_ms = 50;
	f.behind_ms = COMMIT_STRETCH_BEHIND_MS;
	assert_false(commit_policy_due(&f, &LIM));
	f.age_ms = COMMIT_CATCHUP_MS;
	assert_true(commit_policy_due(&f, &LIM));
	f.age_ms = 50;
	f.behind_ms = COMMIT_STRETCH_BEHIND_MS - 1; /* a hiccup of live traffic: no stretch */
	assert_true(commit_policy_due(&f, &LIM));
	f.behind_ms = -1; /* commit time unknown */
	assert_true(commit_policy_due(&f, &LIM));
}

static void test_catching_up_still_commits_on_idle_input(void **state)
{
	(void)state;
	commit_facts f = open_txn();
	f.behind_ms = 60000;
	f.input_idle = true;
	assert_true(commit_policy_due(&f, &LIM));
}

static void test_a_split_transactions_missing_end_commits_at_once(void **state)
{
	(void)state;
	commit_facts f = {.split_end = true, .behind_ms = 60000};
	assert_true(commit_policy_due(&f, &LIM));
	f.in_pg_txn = true; /* read again inside it: not yet */
	assert_false(commit_policy_due(&f, &LIM));
}

/* Between transactions, a commit that began since_ms ago, at rate records per second. */
static gather_facts between(int64_t since_ms, double rate)
{
	gather_facts f = {.between = true, .since_commit_ms = since_ms, .rate = rate, .behind_ms = 5};
	return f;
}

static void test_at_a_low_rate_rows_gather_until_the_last_commit_began_gather_ms_ago(void **state)
{
	(void)state;
	gather_facts f = between(5, 1000); /* 32 rows would take 32 ms: capped at 25 */
	assert_int_equal(commit_policy_gather_ms(&f, 25), 20);
	f.since_commit_ms = 25;
	assert_int_equal(commit_policy_gather_ms(&f, 25), 0);
	f.rate = 0; /* no rate yet (or idle): as slow as can be */
	f.since_commit_ms = 0;
	assert_int_equal(commit_policy_gather_ms(&f, 25), 25);
}

static void test_at_a_high_rate_rows_gather_only_as_long_as_32_take(void **state)
{
	(void)state;
	gather_facts f = between(2, 4000); /* 32 rows in 8 ms */
	assert_int_equal(commit_policy_gather_ms(&f, 25), 6);
	f.since_commit_ms = 8; /* the commit took that long: read at once */
	assert_int_equal(commit_policy_gather_ms(&f, 25), 0);
}

static void test_a_longer_maximum_aims_at_one_row_per_ms_of_it(void **state)
{
	(void)state;
	assert_int_equal(commit_policy_gather_records(0), 32);
	assert_int_equal(commit_policy_gather_records(25), 32); /* the default: 32 rows */
	assert_int_equal(commit_policy_gather_records(64), 64);
	assert_int_equal(commit_policy_gather_records(1000), 1000);
}

static void test_with_a_64_ms_maximum_1000_rows_per_s_gather_the_whole_64_ms(void **state)
{
	(void)state;
	gather_facts f = between(4, 1000); /* 64 rows in 64 ms (32 rows would stop at 32 ms) */
	assert_int_equal(commit_policy_gather_ms(&f, 64), 60);
	f.rate = 500; /* slower: capped at the maximum */
	assert_int_equal(commit_policy_gather_ms(&f, 64), 60);
}

static void test_with_a_64_ms_maximum_high_rates_wait_as_long_as_64_rows_take(void **state)
{
	(void)state;
	gather_facts f = between(2, 4000); /* 64 rows in 16 ms */
	assert_int_equal(commit_policy_gather_ms(&f, 64), 14);
	f.rate = 5000; /* 12.8 ms */
	assert_int_equal(commit_policy_gather_ms(&f, 64), 10);
	f.since_commit_ms = 20; /* the commit took longer: read at once */
	assert_int_equal(commit_policy_gather_ms(&f, 64), 0);
}

static void test_the_default_maximum_waits_at_most_as_long_as_32_rows_take(void **state)
{
	(void)state;
	gather_facts f = between(0, 5000); /* 32 rows in 6.4 ms, as before */
	assert_int_equal(commit_policy_gather_ms(&f, 25), 6);
}

static void test_a_row_after_a_long_quiet_is_read_at_once(void **state)
{
	(void)state;
	gather_facts f = between(100, 10);
	assert_int_equal(commit_policy_gather_ms(&f, 25), 0);
}

static void test_nothing_gathers_inside_a_transaction_or_when_turned_off(void **state)
{
	(void)state;
	gather_facts f = between(0, 1000);
	f.between = false;
	assert_int_equal(commit_policy_gather_ms(&f, 25), 0);
	f.between = true;
	assert_int_equal(commit_policy_gather_ms(&f, 0), 0);
}

static void test_catching_up_on_a_backlog_nothing_gathers(void **state)
{
	(void)state;
	gather_facts f = between(0, 10); /* a slow rate: would gather the whole 1000 ms */
	assert_int_equal(commit_policy_gather_ms(&f, 1000), 1000);
	f.behind_ms = COMMIT_STRETCH_BEHIND_MS; /* the rows are already there: read them */
	assert_int_equal(commit_policy_gather_ms(&f, 1000), 0);
	f.behind_ms = -1; /* not known yet: the rate decides */
	assert_int_equal(commit_policy_gather_ms(&f, 1000), 1000);
}

static void test_the_rate_is_a_moving_average_of_records_per_commit_cycle(void **state)
{
	(void)state;
	double rate = commit_policy_rate(0, 25, 25); /* the first sample as it is */
	assert_true(rate > 999.9 && rate < 1000.1);
	rate = commit_policy_rate(rate, 50, 10); /* 5000/s: a quarter of the way there */
	assert_true(rate > 1999.9 && rate < 2000.1);
	rate = commit_policy_rate(rate, 0, 10000); /* an idle checkpoint pulls it down */
	assert_true(rate > 1499.9 && rate < 1500.1);
	assert_true(commit_policy_rate(0, 3, 0) > 2999.9); /* a zero cycle counts as 1 ms */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_is_due_without_an_open_transaction),
		cmocka_unit_test(test_an_unfinished_group_is_never_committed),
		cmocka_unit_test(test_record_bound_commits_even_inside_a_postgres_transaction),
		cmocka_unit_test(test_age_commits_between_transactions_and_inside_one_only_when_very_old),
		cmocka_unit_test(test_idle_input_commits_only_between_transactions),
		cmocka_unit_test(test_catching_up_stretches_a_transaction_due_by_age_alone),
		cmocka_unit_test(test_catching_up_still_commits_on_idle_input),
		cmocka_unit_test(test_a_split_transactions_missing_end_commits_at_once),
		cmocka_unit_test(test_at_a_low_rate_rows_gather_until_the_last_commit_began_gather_ms_ago),
		cmocka_unit_test(test_at_a_high_rate_rows_gather_only_as_long_as_32_take),
		cmocka_unit_test(test_a_longer_maximum_aims_at_one_row_per_ms_of_it),
		cmocka_unit_test(test_with_a_64_ms_maximum_1000_rows_per_s_gather_the_whole_64_ms),
		cmocka_unit_test(test_with_a_64_ms_maximum_high_rates_wait_as_long_as_64_rows_take),
		cmocka_unit_test(test_the_default_maximum_waits_at_most_as_long_as_32_rows_take),
		cmocka_unit_test(test_a_row_after_a_long_quiet_is_read_at_once),
		cmocka_unit_test(test_nothing_gathers_inside_a_transaction_or_when_turned_off),
		cmocka_unit_test(test_catching_up_on_a_backlog_nothing_gathers),
		cmocka_unit_test(test_the_rate_is_a_moving_average_of_records_per_commit_cycle),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
