/* test_contract.c: schema files by event type and version, and which one a record's event_type and schema_version pick. */
#include "unit.h"

#include <sys/stat.h>

#include "contract.h"

#define SCHEMA "{\"type\":\"record\",\"name\":\"R\",\"fields\":[{\"name\":\"a\",\"type\":\"long\"}]}"

/* A fresh directory holding one valid schema under each of the names. */
static void make_dir(char *dir, size_t len, const char *const *names, size_t n)
{
	snprintf(dir, len, "/tmp/test_contract_XXXXXX");
	assert_non_null(mkdtemp(dir));
	for (size_t i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(SCHEMA, f);
		fclose(f);
	}
}

static void remove_dir(const char *dir, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	rmdir(dir);
}

/* The contract a record with this event_type header and schema_version (its column, route.h)
 * gets (NULL type: no event_type header). */
static long find(const contract_set *s, const char *type, const char *version, char *why, size_t len)
{
	route_header h[2];
	route_msg m = {.headers = h};

	if (type)
		h[m.n_headers++] = (route_header){"event_type", 10, type, strlen(type)};
	if (version)
		m.schema_version = version, m.schema_version_len = strlen(version);
	return contract_find(s, &m, why, len);
}

static void test_versions_come_from_the_file_names(void **state)
{
	(void)state;
	static const char *const names[] = {"Order.avsc", "Order.v1.avsc", "Order.v12.avsc",
					    "Order.v0.avsc", "Order.v01.avsc", "Other.vx.avsc", "notes.txt"};
	char dir[64], why[300];
	make_dir(dir, sizeof(dir), names, 7);
	contract_set *s = contract_set_load(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(contract_set_count(s), 6); /* notes.txt is not a schema file */

	long i = find(s, "Order", NULL, why, sizeof(why));
	assert_true(i >= 0);
	assert_int_equal(contract_at(s, (size_t)i)->version, 0);
	assert_string_equal(contract_at(s, (size_t)i)->file, "Order.avsc");
	i = find(s, "Order", "12", why, sizeof(why));
	assert_true(i >= 0);
	assert_string_equal(contract_at(s, (size_t)i)->file, "Order.v12.avsc");
	i = find(s, "Order", "1", why, sizeof(why));
	assert_true(i >= 0 && contract_at(s, (size_t)i)->version == 1);
	/* .v0 and .v01 are not versions: event types of their own */
	i = find(s, "Order.v0", NULL, why, sizeof(why));
	assert_true(i >= 0 && contract_at(s, (size_t)i)->version == 0);
	assert_true(find(s, "Order.v01", NULL, why, sizeof(why)) >= 0);
	assert_true(find(s, "Other.vx", NULL, why, sizeof(why)) >= 0);
	contract_set_free(s);
	remove_dir(dir, names, 7);
}

/* A schema_version header (a member of the headers object) is no version: the unversioned file. */
static void test_a_schema_version_header_picks_no_version(void **state)
{
	(void)state;
	static const char *const names[] = {"Order.avsc", "Order.v2147483647.avsc"};
	char dir[64], why[300];
	make_dir(dir, sizeof(dir), names, 2);
	contract_set *s = contract_set_load(dir, why, sizeof(why));
	assert_non_null(s);
	route_header h[2] = {{"event_type", 10, "Order", 5}, {"schema_version", 14, "1.0", 3}};
	route_msg m = {.headers = h, .n_headers = 2};
	long i = contract_find(s, &m, why, sizeof(why));
	assert_true(i >= 0);
	assert_string_equal(contract_at(s, (size_t)i)->file, "Order.avsc");
	i = find(s, "Order", "2147483647", why, sizeof(why)); /* up to INT_MAX, the kit's integer */
	assert_true(i >= 0 && contract_at(s, (size_t)i)->version == 2147483647);
	assert_int_equal(find(s, "Order", "2147483648", why, sizeof(why)), -1);
	contract_set_free(s);
	remove_dir(dir, names, 2);
}

static void test_a_missing_version_or_type_is_named(void **state)
{
	(void)state;
	static const char *const names[] = {"Order.avsc", "Order.v1.avsc"};
	char dir[64], why[300];
	make_dir(dir, sizeof(dir), names, 2);
	contract_set *s = contract_set_load(dir, why, sizeof(why));
	assert_non_null(s);
	assert_int_equal(find(s, "Order", "3", why, sizeof(why)), -1);
	assert_string_equal(why, "no Avro schema for event type \"Order\" version 3 (no Order.v3.avsc "
				 "in schema_registry.schema_dir)");
	assert_int_equal(find(s, "Nope", NULL, why, sizeof(why)), -1);
	assert_string_equal(why, "no Avro schema for event type \"Nope\" (no Nope.avsc in "
				 "schema_registry.schema_dir)");
	assert_int_equal(find(s, "Order", "0", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "schema_version 0 of event type \"Order\" is not a positive integer"));
	assert_int_equal(find(s, "Order", "1.5", why, sizeof(why)), -1);
	assert_int_equal(find(s, "Order", "-1", why, sizeof(why)), -1);
	assert_int_equal(find(s, "Order", "99999999999", why, sizeof(why)), -1);
	assert_int_equal(find(s, NULL, "1", why, sizeof(why)), -1);
	assert_non_null(strstr(why, "needs an event_type"));
	contract_set_free(s);
	remove_dir(dir, names, 2);
}

static void test_a_bad_file_is_named(void **state)
{
	(void)state;
	static const char *const names[] = {"Order.v2.avsc"};
	char dir[64], why[300], path[128];
	make_dir(dir, sizeof(dir), names, 1);
	snprintf(path, sizeof(path), "%s/Order.v2.avsc", dir);
	FILE *f = fopen(path, "w");
	fputs("{\"type\": \"nope\"}", f);
	fclose(f);
	assert_null(contract_set_load(dir, why, sizeof(why)));
	assert_non_null(strstr(why, "Order.v2.avsc: "));
	/* a record that must contain itself: refused by name, not a crash in libavro */
	f = fopen(path, "w");
	fputs("{\"type\": \"record\", \"name\": \"Order\", \"fields\": "
	      "[{\"name\": \"parent\", \"type\": \"Order\"}]}", f);
	fclose(f);
	assert_null(contract_set_load(dir, why, sizeof(why)));
	assert_non_null(strstr(why, "Order.v2.avsc: record Order must contain itself"));
	remove_dir(dir, names, 1);
	/* a directory named like a schema file: said so, no attempt to read it */
	make_dir(dir, sizeof(dir), NULL, 0);
	snprintf(path, sizeof(path), "%s/Sub.avsc", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_null(contract_set_load(dir, why, sizeof(why)));
	snprintf(path, sizeof(path), "%s/Sub.avsc: not a regular file", dir);
	assert_string_equal(why, path);
	snprintf(path, sizeof(path), "%s/Sub.avsc", dir);
	rmdir(path);
	rmdir(dir);
	assert_null(contract_set_load(dir, why, sizeof(why)));
	assert_non_null(strstr(why, "cannot read the directory"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_versions_come_from_the_file_names),
		cmocka_unit_test(test_a_schema_version_header_picks_no_version),
		cmocka_unit_test(test_a_missing_version_or_type_is_named),
		cmocka_unit_test(test_a_bad_file_is_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
