/* test_standby.c: how a relay standing by names the active one (relay.takeover = "wait"). */
#include "unit.h"

#include "standby.h"

static void test_the_holder_is_named_with_what_is_known(void **state)
{
	(void)state;
	char buf[256];
	standby_holder h = {.held = true, .pid = 4242};

	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "backend PID 4242");
	snprintf(h.addr, sizeof(h.addr), "10.0.0.6");
	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "backend PID 4242 from 10.0.0.6");
	snprintf(h.app, sizeof(h.app), "outbox-relay[811]@db2");
	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "outbox-relay[811]@db2 (10.0.0.6, backend PID 4242)");
	h.addr[0] = '\0'; /* a Unix socket */
	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "outbox-relay[811]@db2 (backend PID 4242)");
}

static void test_a_holder_not_shown_or_gone(void **state)
{
	(void)state;
	char buf[64];
	standby_holder h = {.held = true}; /* let go between the try and the look */

	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "another process");
	h.held = false;
	standby_holder_text(&h, buf, sizeof(buf));
	assert_string_equal(buf, "nobody");
}

static void test_a_long_holder_text_is_cut_not_overrun(void **state)
{
	(void)state;
	char buf[24];
	standby_holder h = {.held = true, .pid = 4242};

	memset(h.app, 'x', sizeof(h.app) - 1);
	standby_holder_text(&h, buf, sizeof(buf));
	assert_int_equal(strlen(buf), sizeof(buf) - 1);
	assert_memory_equal(buf, "xxxxxxxxxxxxxxxxxxxxxxx", sizeof(buf) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_the_holder_is_named_with_what_is_known),
		cmocka_unit_test(test_a_holder_not_shown_or_gone),
		cmocka_unit_test(test_a_long_holder_text_is_cut_not_overrun),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
