/* test_standby.c: when a relay standing by may take the slot, and how it names the holder. */
#include "unit.h"

#include "standby.h"

static void test_a_missing_or_inactive_slot_is_free(void **state)
{
	(void)state;
	standby_slot missing = {.exists = false};
	standby_slot idle = {.exists = true, .active = false};
	standby_slot held = {.exists = true, .active = true, .pid = 42};
	assert_true(standby_slot_free(&missing));
	assert_true(standby_slot_free(&idle));
	assert_false(standby_slot_free(&held));
}

static void test_the_holder_is_named_with_what_is_known(void **state)
{
	(void)state;
	char buf[256];
	standby_slot s = {.exists = true, .active = true, .pid = 4242};

	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "held by PID 4242");
	snprintf(s.holder, sizeof(s.holder), "outbox-relay[811]@db2");
	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "held by PID 4242 (outbox-relay[811]@db2)");
	snprintf(s.addr, sizeof(s.addr), "10.0.0.6");
	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "held by PID 4242 (outbox-relay[811]@db2, 10.0.0.6)");
	s.holder[0] = '\0';
	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "held by PID 4242 (10.0.0.6)");
	/* Another role's walsender: pg_stat_activity shows neither PID nor name. */
	memset(&s, 0, sizeof(s));
	s.exists = s.active = true;
	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "held by another process");
	s.active = false;
	standby_holder_text(&s, buf, sizeof(buf));
	assert_string_equal(buf, "free");
}

static void test_a_long_holder_text_is_cut_not_overrun(void **state)
{
	(void)state;
	char buf[24];
	standby_slot s = {.exists = true, .active = true, .pid = 4242};

	memset(s.holder, 'x', sizeof(s.holder) - 1);
	standby_holder_text(&s, buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_memory_equal(buf, "held by PID 4242 (xxxxx", sizeof(buf) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_missing_or_inactive_slot_is_free),
		cmocka_unit_test(test_the_holder_is_named_with_what_is_known),
		cmocka_unit_test(test_a_long_holder_text_is_cut_not_overrun),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
