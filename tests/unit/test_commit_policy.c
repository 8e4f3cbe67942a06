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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
