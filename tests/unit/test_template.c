/* test_template.c: topic templates: which placeholders each kind accepts, what is an error, and expansion. */
#include "unit.h"

#include "template.h"

/* The template is refused with a message holding words (and naming the template). */
static void expect_refused(const char *text, const template_vars *vars, const char *words)
{
	char err[512] = "";

	if (template_check(text, vars, err, sizeof(err)) == 0)
		fail_msg("accepted as a %s: '%s'", vars->kind, text);
	if (!strstr(err, words))
		fail_msg("'%s': want '%s' in: %s", text, words, err);
	if (!strstr(err, "topic template"))
		fail_msg("'%s': the message does not say it is the topic template: %s", text, err);
}

static void expect_accepted(const char *text, const template_vars *vars)
{
	char err[512] = "";

	if (template_check(text, vars, err, sizeof(err)) != 0)
		fail_msg("refused as a %s: '%s': %s", vars->kind, text, err);
}

static void test_capture_topic_takes_only_prefix_schema_and_table(void **state)
{
	(void)state;
	expect_accepted("${prefix}.${schema}.${table}", &template_capture_vars);
	expect_accepted("legacy.${table}", &template_capture_vars);
	expect_accepted("all-changes", &template_capture_vars);
	expect_refused("cdc.${foo}.${table}", &template_capture_vars, "unknown placeholder '${foo}'");
	expect_refused("cdc.${foo}.${table}", &template_capture_vars, "${prefix}, ${schema}, ${table}");
	expect_refused("${aggregate_type}", &template_capture_vars, "unknown placeholder");
	expect_refused("${Table}", &template_capture_vars, "unknown placeholder '${Table}'");
}

static void test_outbox_topic_takes_any_column_name(void **state)
{
	(void)state;
	expect_accepted("outbox.${aggregate_type}", &template_outbox_vars);
	expect_accepted("${schema}.${table}-${event_type}", &template_outbox_vars);
	expect_accepted("${prefix}.${foo}", &template_outbox_vars);
}

static void test_unterminated_empty_or_nested_placeholder_is_an_error(void **state)
{
	const template_vars *kinds[] = {&template_capture_vars, &template_outbox_vars};

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		expect_refused("cdc.${", kinds[i], "without a closing '}'");
		expect_refused("cdc.${table", kinds[i], "without a closing '}'");
		expect_refused("cdc.${}", kinds[i], "empty placeholder");
		expect_refused("${}.x", kinds[i], "empty placeholder");
		expect_refused("cdc.${a${table}", kinds[i], "holds '$' or '{'");
	}
}

static void test_literal_text_must_fit_a_kafka_topic_name(void **state)
{
	char long_tmpl[300];

	(void)state;
	expect_refused("", &template_outbox_vars, "empty");
	expect_refused("cdc ${table}", &template_capture_vars, "character Kafka topic names cannot have");
	expect_refused("cdc.${table}}", &template_capture_vars, "character Kafka");
	expect_refused("cdc.$table", &template_capture_vars, "character Kafka");
	expect_refused("..", &template_capture_vars, "not a valid Kafka topic name");
	memset(long_tmpl, 'a', 250);
	strcpy(long_tmpl + 250, "${table}");
	expect_refused(long_tmpl, &template_capture_vars, "longer than 249");
}

/* Values for the expansion tests: name=value pairs, NULL value for a null field. */
static int pairs_value(void *ctx, const char *name, const char **text, size_t *len,
		       const char **why)
{
	const char *const *pairs = ctx;

	for (size_t i = 0; pairs[i]; i += 2) {
		if (strcmp(pairs[i], name) == 0) {
			*text = pairs[i + 1];
			*len = *text ? strlen(*text) : 0;
			return 0;
		}
	}
	*why = "no such field";
	return -1;
}

static void test_expansion_fills_in_each_placeholder(void **state)
{
	static const char *const pairs[] = {"prefix", "cdc", "schema", "public", "table", "users",
					    "nothing", NULL, NULL};
	topic_template t;
	char out[TEMPLATE_TOPIC_MAX + 1], err[256];
	const char *why = NULL;

	(void)state;
	assert_int_equal(template_compile(&t, "${prefix}.${schema}.${table}-v1",
					  &template_capture_vars, err, sizeof(err)), 0);
	assert_int_equal(template_expand(&t, pairs_value, (void *)pairs, out, &why), 19);
	assert_string_equal(out, "cdc.public.users-v1");
	template_free(&t);

	/* A null field, a field the callback refuses, a name Kafka refuses. */
	assert_int_equal(template_compile(&t, "x.${nothing}", &template_outbox_vars, err, sizeof(err)), 0);
	assert_int_equal(template_expand(&t, pairs_value, (void *)pairs, out, &why), -1);
	assert_string_equal(why, "a field of the topic template is null or missing");
	template_free(&t);
	assert_int_equal(template_compile(&t, "x.${other}", &template_outbox_vars, err, sizeof(err)), 0);
	assert_int_equal(template_expand(&t, pairs_value, (void *)pairs, out, &why), -1);
	assert_string_equal(why, "no such field");
	template_free(&t);
	static const char *const spaced[] = {"table", "my table", NULL};
	assert_int_equal(template_compile(&t, "cdc.${table}", &template_capture_vars, err, sizeof(err)), 0);
	assert_int_equal(template_expand(&t, pairs_value, (void *)spaced, out, &why), -1);
	assert_non_null(strstr(why, "not a valid Kafka topic name"));
	template_free(&t);
}

static void test_expansion_longer_than_a_topic_name_is_refused(void **state)
{
	char big[300];
	const char *const pairs[] = {"table", big, NULL};
	topic_template t;
	char out[TEMPLATE_TOPIC_MAX + 1], err[256];
	const char *why = NULL;

	(void)state;
	memset(big, 'b', 260);
	big[260] = '\0';
	assert_int_equal(template_compile(&t, "cdc.${table}", &template_capture_vars, err, sizeof(err)), 0);
	assert_int_equal(template_expand(&t, pairs_value, (void *)pairs, out, &why), -1);
	assert_non_null(strstr(why, "longer than 249"));
	assert_int_equal(strlen(out), TEMPLATE_TOPIC_MAX);
	template_free(&t);
}

static void test_topic_names_kafka_accepts(void **state)
{
	(void)state;
	assert_true(template_topic_name_ok("a.b-c_D9", 8));
	assert_false(template_topic_name_ok("", 0));
	assert_false(template_topic_name_ok(".", 1));
	assert_false(template_topic_name_ok("..", 2));
	assert_false(template_topic_name_ok("a b", 3));
}

static void test_a_template_may_expand_to_the_topics_its_literals_allow(void **state)
{
	(void)state;
	topic_template t;
	char err[200];

	assert_int_equal(template_compile(&t, "outbox.${aggregate_type}.v1", &template_outbox_vars, err,
					  sizeof(err)), 0);
	assert_true(template_may_expand_to(&t, "outbox.user.v1", 14));
	assert_true(template_may_expand_to(&t, "outbox.a.b.v1", 13));
	assert_false(template_may_expand_to(&t, "outbox.user.v2", 14));
	assert_false(template_may_expand_to(&t, "other.user.v1", 13));
	template_free(&t);
	assert_int_equal(template_compile(&t, "${a}-${b}", &template_outbox_vars, err, sizeof(err)), 0);
	assert_true(template_may_expand_to(&t, "x-y", 3));
	assert_false(template_may_expand_to(&t, "xy", 2));
	template_free(&t);
	assert_int_equal(template_compile(&t, "fixed", &template_outbox_vars, err, sizeof(err)), 0);
	assert_true(template_may_expand_to(&t, "fixed", 5));
	assert_false(template_may_expand_to(&t, "fixed2", 6));
	template_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_topic_takes_only_prefix_schema_and_table),
		cmocka_unit_test(test_outbox_topic_takes_any_column_name),
		cmocka_unit_test(test_unterminated_empty_or_nested_placeholder_is_an_error),
		cmocka_unit_test(test_literal_text_must_fit_a_kafka_topic_name),
		cmocka_unit_test(test_expansion_fills_in_each_placeholder),
		cmocka_unit_test(test_expansion_longer_than_a_topic_name_is_refused),
		cmocka_unit_test(test_topic_names_kafka_accepts),
		cmocka_unit_test(test_a_template_may_expand_to_the_topics_its_literals_allow),
	};
	return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
