/* test_backfill.c: the backfill's stored state: the slot's snapshot as kept, progress round trips. */
#include "unit.h"

#include "backfill.h"

/* The "snapshot" member of a planned backfill's state. */
static char *planned_snapshot(const char *exported)
{
	relay_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	backfill *b = backfill_new(&cfg);
	backfill_plan(b, "first start", exported, 0x1933E68, 1);
	char *state = backfill_state_json(b);
	const char *at = strstr(state, "\"snapshot\":\"");
	assert_non_null(at);
	at += strlen("\"snapshot\":\"");
	char *snap = strndup(at, strcspn(at, "\""));
	free(state);
	backfill_free(b);
	return snap;
}

static void test_snapshot_with_xmin_past_xmax_keeps_its_visibility(void **state)
{
	(void)state;
	/* PostgreSQL tests xmin first: 3387 committed before the slot and is visible. */
	char *s = planned_snapshot("3388:3387:");
	assert_string_equal(s, "3388:3388:");
	free(s);
	s = planned_snapshot("812:815:813");
	assert_string_equal(s, "812:815:813");
	free(s);
}

static void test_state_round_trips_with_progress_and_skip(void **state)
{
	(void)state;
	relay_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	backfill *b = backfill_new(&cfg), *c = backfill_new(&cfg);
	const char *text = "{\"reason\":\"slot lost\",\"done\":false,\"rows\":12,\"snapshot\":\"812:815:813\","
			   "\"slot_lsn\":\"0/1938FD8\",\"started_us\":5,\"table\":0,\"skip\":[900,3],"
			   "\"after\":[1796227713000000,812,4,\"(0,3)\"]}";

	assert_int_equal(backfill_load(b, text), 0);
	assert_true(backfill_active(b));
	assert_int_equal(backfill_rows(b), 12);
	char *again = backfill_state_json(b);
	assert_int_equal(backfill_load(c, again), 0);
	char *third = backfill_state_json(c);
	assert_string_equal(again, third);
	free(again);
	free(third);
	assert_int_equal(backfill_load(b, "{\"reason\":\"x\",\"done\":false,\"rows\":1}"), -1);
	assert_int_equal(backfill_load(b, "{\"reason\":\"x\",\"done\":true,\"rows\":1}"), 0);
	assert_false(backfill_active(b));
	backfill_free(b);
	backfill_free(c);
}

static void test_rewind_before_the_first_commit_forgets_uncommitted_rows(void **state)
{
	(void)state;
	relay_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	backfill *b = backfill_new(&cfg);

	backfill_plan(b, "slot lost", "812:815:813", 0x1938FD8, 1);
	backfill_row_done(b);
	backfill_row_done(b);
	backfill_rewind(b, NULL); /* Kafka aborted the first transaction */
	assert_int_equal(backfill_rows(b), 0);
	assert_true(backfill_active(b));
	char *text = backfill_state_json(b);
	assert_null(strstr(text, "\"after\""));
	free(text);
	backfill_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_with_xmin_past_xmax_keeps_its_visibility),
		cmocka_unit_test(test_state_round_trips_with_progress_and_skip),
		cmocka_unit_test(test_rewind_before_the_first_commit_forgets_uncommitted_rows),
	};
	return cmocka_run_group_tests_name("backfill", tests, NULL, NULL);
}
