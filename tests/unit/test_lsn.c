/* test_lsn.c: LSN text form: parsing, printing, round trips, malformed input. */
#include "unit.h"

#include "lsn.h"

/* Parses a C string through an exact-size heap copy (no terminator to lean on). */
static bool parse(const char *text, lsn_t *out)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	bool ok = lsn_parse(buf, len, out);

	free(buf);
	return ok;
}

static void test_parse_valid(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		lsn_t lsn;
	} cases[] = {
		{"0/0", 0},
		{"0/1", 1},
		{"16/B374D848", 0x16B374D848ull},
		{"16/b374d848", 0x16B374D848ull},
		{"0/1954238", 0x1954238},
		{"FFFFFFFF/FFFFFFFF", UINT64_MAX},
		{"1/0", 0x100000000ull},
		{"00000001/00000002", 0x100000002ull},
		{"aBcDeF01/23456789", 0xABCDEF0123456789ull},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		lsn_t v = 12345;
		if (!parse(cases[i].text, &v))
			fail_msg("rejected %s", cases[i].text);
		assert_int_equal(v, cases[i].lsn);
	}
}

static void test_parse_malformed(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "/", "0", "0/", "/0", "16B374D848", "0//1", "0/1/2", "G/0", "0/G", "0/1x",
		"x0/1", " 0/1", "0/1 ", "0 /1", "0/ 1", "-1/0", "+1/0", "0x1/0", "123456789/0",
		"0/123456789", "1.5/0", "0/\xC3\xA9", "0/1\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		lsn_t v = 777;
		if (parse(bad[i], &v))
			fail_msg("accepted [%s]", bad[i]);
		assert_int_equal(v, 777); /* untouched on failure */
	}
	/* A length shorter than the text: only that prefix is read. */
	lsn_t v;
	assert_true(lsn_parse("1/2345", 4, &v));
	assert_int_equal(v, 0x100000023ull);
	assert_false(lsn_parse("1/2", 2, &v));
	assert_false(lsn_parse("1/2", 0, &v));
	/* A NUL inside the length is not the end. */
	assert_false(lsn_parse("1/2\0003", 5, &v));
}

static void test_format(void **state)
{
	(void)state;
	char buf[LSN_TEXT_MAX];

	assert_string_equal(lsn_format(0, buf), "0/0");
	assert_string_equal(lsn_format(0x16B374D848ull, buf), "16/B374D848");
	assert_string_equal(lsn_format(UINT64_MAX, buf), "FFFFFFFF/FFFFFFFF");
	assert_int_equal(strlen(buf), LSN_TEXT_MAX - 1);
	assert_ptr_equal(lsn_format(1, buf), buf);
	assert_string_equal(buf, "0/1");
	assert_string_equal(lsn_format(0x100000000ull, buf), "1/0");
}

static uint64_t rnd_state = 0x13198A2E03707344ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545F4914F6CDD1Dull;
}

static void test_round_trip(void **state)
{
	(void)state;
	char buf[LSN_TEXT_MAX];

	for (int i = 0; i < 100000; i++) {
		lsn_t v = rnd(), back = 0;
		/* Also small and half-empty values, where leading zeros are left out. */
		if (i % 3 == 1)
			v >>= rnd() % 64;
		else if (i % 3 == 2)
			v &= 0xFFFFFFFFull;
		lsn_format(v, buf);
		if (!parse(buf, &back) || back != v)
			fail_msg("%llx -> %s -> %llx", (unsigned long long)v, buf, (unsigned long long)back);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests_name("lsn", tests, NULL, NULL);
}
