/* test_pipeline.c: the stages after build: transform and encode leave a JSON record as built. */
#include "unit.h"

#include "encode.h"
#include "pipeline.h"

static void test_json_records_go_out_byte_for_byte_as_built(void **state)
{
	(void)state;
	route_msg m = {.topic = "t", .key = "{\"id\":1}", .key_len = 8, .value = "{\"a\":\"\\u00e9\"}",
		       .value_len = 14};
	route_msg before = m;
	const char *why = NULL;
	relay_config cfg = {0};
	char err[200];
	pipeline *p = pipeline_new(&cfg, err, sizeof(err));

	assert_non_null(p);
	assert_int_equal(pipeline_finish(p, RECORD_CHANGE, "public.t", NULL, &m, &why), 0);
	assert_null(why);
	assert_ptr_equal(m.key, before.key);
	assert_int_equal(m.key_len, before.key_len);
	assert_ptr_equal(m.value, before.value);
	assert_int_equal(m.value_len, before.value_len);
	pipeline_free(p);
}

static void test_formats_are_found_by_name(void **state)
{
	(void)state;
	assert_non_null(encode_find("json"));
	assert_string_equal(encode_find("json")->name, "json");
	assert_non_null(encode_find("avro"));
	assert_null(encode_find(""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_records_go_out_byte_for_byte_as_built),
		cmocka_unit_test(test_formats_are_found_by_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
