/* test_registry.c: subject names by strategy, as Confluent's serializers give them (no registry needed). */
#include "unit.h"

#include "registry.h"

static void test_value_subjects_follow_the_strategy(void **state)
{
	(void)state;
	char out[64];

	assert_int_equal(registry_subject(REGISTRY_TOPIC_NAME, "outbox.user", "a.b.R", out, sizeof(out)), 0);
	assert_string_equal(out, "outbox.user-value");
	assert_int_equal(registry_subject(REGISTRY_TOPIC_NAME, "outbox.user", NULL, out, sizeof(out)), 0);
	assert_string_equal(out, "outbox.user-value");
	assert_int_equal(registry_subject(REGISTRY_RECORD_NAME, "outbox.user", "a.b.R", out, sizeof(out)), 0);
	assert_string_equal(out, "a.b.R");
	assert_int_equal(registry_subject(REGISTRY_TOPIC_RECORD_NAME, "outbox.user", "a.b.R", out, sizeof(out)), 0);
	assert_string_equal(out, "outbox.user-a.b.R");
	/* the record strategies need a named schema; a name that does not fit is refused */
	assert_int_equal(registry_subject(REGISTRY_RECORD_NAME, "t", NULL, out, sizeof(out)), -1);
	assert_int_equal(registry_subject(REGISTRY_TOPIC_NAME, "a-very-long-topic-name", NULL, out, 10), -1);
}

static void test_key_subjects_follow_the_strategy(void **state)
{
	(void)state;
	char out[64];

	assert_int_equal(registry_key_subject(REGISTRY_TOPIC_NAME, "outbox.user", "string", out, sizeof(out)), 0);
	assert_string_equal(out, "outbox.user-key");
	assert_int_equal(registry_key_subject(REGISTRY_RECORD_NAME, "outbox.user", "string", out, sizeof(out)), 0);
	assert_string_equal(out, "string");
	assert_int_equal(registry_key_subject(REGISTRY_TOPIC_RECORD_NAME, "outbox.user", "string", out, sizeof(out)), 0);
	assert_string_equal(out, "outbox.user-string");
	assert_int_equal(registry_key_subject(REGISTRY_TOPIC_NAME, "a-very-long-topic-name", "string", out, 10), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_subjects_follow_the_strategy),
		cmocka_unit_test(test_key_subjects_follow_the_strategy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
