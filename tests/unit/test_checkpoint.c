/* test_checkpoint.c: checkpoint records: JSON text, round trips, and records that are refused. */
#include "unit.h"

#include "checkpoint.h"

/* Decodes a C string through an exact-size heap copy (no terminator to lean on). */
static int decode(const char *text, checkpoint *cp)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	int r = checkpoint_decode(buf, len, cp);

	free(buf);
	return r;
}

/* Encodes, compares with the expected text, decodes again and compares with the original. */
static void round_trip(const checkpoint *cp, const char *slot, const char *want)
{
	char *text = checkpoint_encode(cp, slot);
	checkpoint back;

	assert_non_null(text);
	if (want)
		assert_string_equal(text, want);
	memset(&back, 0xA5, sizeof(back));
	assert_int_equal(decode(text, &back), 0);
	assert_int_equal(back.lsn, cp->lsn);
	assert_int_equal(back.partial_nextlsn, cp->partial_nextlsn);
	assert_int_equal(back.partial_rows, cp->partial_nextlsn ? cp->partial_rows : 0);
	free(text);
}

static void test_encode_whole_position(void **state)
{
	(void)state;
	checkpoint cp = {.lsn = 0x1A2B3C4};

	round_trip(&cp, "outbox_relay", "{\"version\":1,\"slot\":\"outbox_relay\",\"lsn\":\"0/1A2B3C4\"}");
	cp.lsn = 0;
	round_trip(&cp, "s", "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/0\"}");
	cp.lsn = UINT64_MAX;
	round_trip(&cp, "s", "{\"version\":1,\"slot\":\"s\",\"lsn\":\"FFFFFFFF/FFFFFFFF\"}");
	cp.lsn = 0x16B374D848ull;
	round_trip(&cp, "s", "{\"version\":1,\"slot\":\"s\",\"lsn\":\"16/B374D848\"}");
}

static void test_encode_partial(void **state)
{
	(void)state;
	checkpoint cp = {.lsn = 0x1A2B3C4, .partial_nextlsn = 0x1F00000, .partial_rows = 20000};

	round_trip(&cp, "outbox_relay",
		   "{\"version\":1,\"slot\":\"outbox_relay\",\"lsn\":\"0/1A2B3C4\","
		   "\"partial\":{\"nextlsn\":\"0/1F00000\",\"rows\":20000}}");
	/* A count of zero is still a partial record (and comes back as one). */
	cp.partial_rows = 0;
	round_trip(&cp, "s",
		   "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/1A2B3C4\","
		   "\"partial\":{\"nextlsn\":\"0/1F00000\",\"rows\":0}}");
	/* The largest count JSON integers (jansson's json_int_t) carry. */
	cp.lsn = 0xFFFFFFFF00000000ull;
	cp.partial_nextlsn = UINT64_MAX;
	cp.partial_rows = INT64_MAX;
	round_trip(&cp, "s",
		   "{\"version\":1,\"slot\":\"s\",\"lsn\":\"FFFFFFFF/0\","
		   "\"partial\":{\"nextlsn\":\"FFFFFFFF/FFFFFFFF\",\"rows\":9223372036854775807}}");
}

static void test_encode_escapes_slot(void **state)
{
	(void)state;
	checkpoint cp = {.lsn = 0x10};

	/* Slot names are plain identifiers, but the text stays JSON whatever they hold. */
	round_trip(&cp, "a\"b\\c", "{\"version\":1,\"slot\":\"a\\\"b\\\\c\",\"lsn\":\"0/10\"}");
}

static void test_decode_accepts_variants(void **state)
{
	(void)state;
	checkpoint cp;

	/* Only lsn (and partial) matter; other members, spacing and key order do not. */
	assert_int_equal(decode("{\"lsn\":\"0/10\"}", &cp), 0);
	assert_int_equal(cp.lsn, 0x10);
	assert_int_equal(cp.partial_nextlsn, 0);
	assert_int_equal(cp.partial_rows, 0);
	assert_int_equal(decode(" { \"partial\" : { \"rows\" : 5 , \"nextlsn\" : \"1/ab\" } ,"
				"\"lsn\" : \"1/9\", \"version\": 1, \"slot\": \"x\", \"extra\": [1,2] } ",
				&cp),
			 0);
	assert_int_equal(cp.lsn, 0x100000009ull);
	assert_int_equal(cp.partial_nextlsn, 0x1000000ABull);
	assert_int_equal(cp.partial_rows, 5);
	/* A record without partial leaves no partial behind from what cp held before. */
	memset(&cp, 0xA5, sizeof(cp));
	assert_int_equal(decode("{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/20\"}", &cp), 0);
	assert_int_equal(cp.lsn, 0x20);
	assert_int_equal(cp.partial_nextlsn, 0);
	assert_int_equal(cp.partial_rows, 0);
}

static void test_decode_uses_only_len_bytes(void **state)
{
	(void)state;
	const char *text = "{\"lsn\":\"0/10\"}garbage";
	checkpoint cp;

	/* The record is the first len bytes; what follows in the buffer is not read. */
	assert_int_equal(checkpoint_decode(text, strlen("{\"lsn\":\"0/10\"}"), &cp), 0);
	assert_int_equal(cp.lsn, 0x10);
	/* But inside len, trailing text is malformed. */
	assert_int_equal(checkpoint_decode(text, strlen(text), &cp), -1);
	/* A record cut short. */
	assert_int_equal(checkpoint_decode(text, 10, &cp), -1);
	assert_int_equal(checkpoint_decode(text, 0, &cp), -1);
}

static void test_decode_rejects_malformed_json(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		" ",
		"null",
		"[]",
		"[{\"lsn\":\"0/10\"}]",
		"\"0/10\"",
		"42",
		"{",
		"{\"lsn\":\"0/10\"",
		"{\"lsn\":\"0/10\",}",
		"{lsn:\"0/10\"}",
		"{'lsn':'0/10'}",
		"{\"lsn\":\"0/10\"}}",
		"{\"lsn\":\"0/10\"} {\"lsn\":\"0/20\"}",
	};
	checkpoint cp;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode(bad[i], &cp) != -1)
			fail_msg("accepted [%s]", bad[i]);
}

static void test_decode_rejects_missing_or_bad_lsn(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{}",
		"{\"version\":1,\"slot\":\"s\"}",
		"{\"LSN\":\"0/10\"}",
		"{\"lsn\":null}",
		"{\"lsn\":16}",
		"{\"lsn\":true}",
		"{\"lsn\":[\"0/10\"]}",
		"{\"lsn\":{\"hi\":0,\"lo\":16}}",
		/* bad LSN text */
		"{\"lsn\":\"\"}",
		"{\"lsn\":\"16\"}",
		"{\"lsn\":\"0/\"}",
		"{\"lsn\":\"/10\"}",
		"{\"lsn\":\"/\"}",
		"{\"lsn\":\"0/G\"}",
		"{\"lsn\":\"0x0/10\"}",
		"{\"lsn\":\"0/10 \"}",
		"{\"lsn\":\" 0/10\"}",
		"{\"lsn\":\"-1/10\"}",
		"{\"lsn\":\"0/10/20\"}",
		"{\"lsn\":\"123456789/0\"}",
		"{\"lsn\":\"0/123456789\"}",
		"{\"lsn\":\"0\\u0000/10\"}",
		"{\"lsn\":\"0/10\\u0000\"}",
	};
	checkpoint cp;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode(bad[i], &cp) != -1)
			fail_msg("accepted [%s]", bad[i]);
}

static void test_decode_rejects_bad_partial(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"{\"lsn\":\"0/10\",\"partial\":null}",
		"{\"lsn\":\"0/10\",\"partial\":5}",
		"{\"lsn\":\"0/10\",\"partial\":\"0/20\"}",
		"{\"lsn\":\"0/10\",\"partial\":[]}",
		"{\"lsn\":\"0/10\",\"partial\":{}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\"}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"rows\":3}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":null,\"rows\":3}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":32,\"rows\":3}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/2X\",\"rows\":3}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"20\",\"rows\":3}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"\",\"rows\":3}}",
		/* negative or non-integer counts */
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":-1}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":-9223372036854775808}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":\"3\"}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":3.0}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":1.5}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":null}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":true}}",
		/* beyond a 64-bit signed integer: jansson refuses the text */
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":9223372036854775808}}",
		"{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":18446744073709551615}}",
	};
	checkpoint cp;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode(bad[i], &cp) != -1)
			fail_msg("accepted [%s]", bad[i]);
	/* The same records with a good partial are fine. */
	assert_int_equal(decode("{\"lsn\":\"0/10\",\"partial\":{\"nextlsn\":\"0/20\",\"rows\":0}}", &cp), 0);
	assert_int_equal(cp.partial_nextlsn, 0x20);
	assert_int_equal(cp.partial_rows, 0);
}

static void test_timeline_is_recorded_and_optional(void **state)
{
	(void)state;
	checkpoint cp = {.lsn = 0x10, .tli = 3}, back;
	char *text = checkpoint_encode(&cp, "s");

	assert_string_equal(text, "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/10\",\"tli\":3}");
	assert_int_equal(decode(text, &back), 0);
	assert_int_equal(back.tli, 3);
	free(text);
	cp.tli = UINT32_MAX;
	text = checkpoint_encode(&cp, "s");
	assert_int_equal(decode(text, &back), 0);
	assert_int_equal(back.tli, UINT32_MAX);
	free(text);
	/* An older relay's checkpoint: no timeline, read as 0 (not recorded). */
	assert_int_equal(decode("{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/10\"}", &back), 0);
	assert_int_equal(back.tli, 0);
	static const char *const bad[] = {
		"{\"lsn\":\"0/10\",\"tli\":-1}",
		"{\"lsn\":\"0/10\",\"tli\":4294967296}",
		"{\"lsn\":\"0/10\",\"tli\":\"2\"}",
		"{\"lsn\":\"0/10\",\"tli\":2.0}",
		"{\"lsn\":\"0/10\",\"tli\":null}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode(bad[i], &back) != -1)
			fail_msg("accepted [%s]", bad[i]);
}

/* Decodes with the recovery fields through an exact-size heap copy. */
static int decode_with(const char *text, checkpoint *cp, checkpoint_recovery *rec)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	int r = checkpoint_decode_with(buf, len, cp, rec);

	free(buf);
	return r;
}

static void test_split_transaction_counts_are_kept_as_written(void **state)
{
	(void)state;
	checkpoint cp = {.lsn = 0x10, .partial_nextlsn = 0x20, .partial_rows = 2}, back;
	checkpoint_recovery rec = {.txn_counts = "{\"records\":3,\"rows\":2,\"begun\":true,\"topics\":{\"b\":2,\"a\":1}}"};
	checkpoint_recovery got = {0};
	char *text = checkpoint_encode_with(&cp, &rec, "s");

	assert_non_null(strstr(text, "\"txn_counts\":{\"records\":3,\"rows\":2,\"begun\":true,\"topics\":{\"b\":2,\"a\":1}}"));
	assert_int_equal(decode_with(text, &back, &got), 0);
	assert_string_equal(got.txn_counts, rec.txn_counts); /* topics in the order written */
	checkpoint_recovery_free(&got);
	free(text);
	/* Absent (an older relay, or no split): none. Not an object: refused. */
	assert_int_equal(decode_with("{\"lsn\":\"0/10\"}", &back, &got), 0);
	assert_null(got.txn_counts);
	assert_false(got.txn_counts_bad);
	assert_int_equal(decode_with("{\"lsn\":\"0/10\",\"txn_counts\":3}", &back, &got), -1);
	checkpoint_recovery_free(&got);
	/* An object that is not valid counts (sums, overflow, no rows): the checkpoint is still
	 * one, its counts are kept out and marked, for the restart to decide. */
	assert_int_equal(decode_with("{\"lsn\":\"0/10\",\"txn_counts\":{\"records\":2,\"rows\":2,"
				     "\"topics\":{\"a\":1}}}", &back, &got), 0);
	assert_null(got.txn_counts);
	assert_true(got.txn_counts_bad);
	checkpoint_recovery_free(&got);
	assert_int_equal(decode_with("{\"lsn\":\"0/10\",\"txn_counts\":{\"records\":1,"
				     "\"topics\":{\"a\":1}}}", &back, &got), 0);
	assert_true(got.txn_counts_bad);
	checkpoint_recovery_free(&got);
}

static void test_xid_ends_are_stored_as_distances(void **state)
{
	(void)state;
	uint32_t xids[] = {7, 5, 6};
	lsn_t ends[] = {0x100, 0x180, 0x1F0};
	checkpoint cp = {.lsn = 0x200}, back;
	checkpoint_recovery rec = {.commit_us = 5, .window_ms = 1000, .xids = xids, .n_xids = 3,
				   .ends = ends, .xids_after = 0x80};
	checkpoint_recovery got = {0};
	char *text = checkpoint_encode_with(&cp, &rec, "s");

	assert_string_equal(text, "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/200\",\"commit_time_us\":5,"
				  "\"window_ms\":1000,\"xids\":[7,5,6],\"ends\":[128,112,16],"
				  "\"xids_after\":\"0/80\"}");
	assert_int_equal(decode_with(text, &back, &got), 0);
	assert_int_equal(got.n_xids, 3);
	assert_non_null(got.ends);
	for (int i = 0; i < 3; i++)
		assert_int_equal(got.ends[i], ends[i]);
	assert_int_equal(got.xids_after, 0x80);
	checkpoint_recovery_free(&got);
	free(text);
	/* Ends that do not ascend up to lsn cannot be distances: left out (not recorded). */
	ends[1] = 0x90;
	text = checkpoint_encode_with(&cp, &rec, "s");
	assert_null(strstr(text, "ends"));
	free(text);
	ends[1] = 0x180;
	cp.lsn = 0x1E0;
	text = checkpoint_encode_with(&cp, &rec, "s");
	assert_null(strstr(text, "ends"));
	free(text);
	/* An older relay's checkpoint: neither field, fine. */
	assert_int_equal(decode_with("{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1000,"
				     "\"xids\":[7]}", &back, &got), 0);
	assert_null(got.ends);
	assert_int_equal(got.xids_after, 0);
	checkpoint_recovery_free(&got);
}

static void test_every_field_comes_in_one_order_with_the_xids_between_jansson_parts(void **state)
{
	(void)state;
	uint32_t xids[] = {4294967295u, 0};
	lsn_t ends[] = {0x100, 0x1F0};
	checkpoint cp = {.lsn = 0x200, .tli = 2, .partial_nextlsn = 0x300, .partial_rows = 4,
			 .partial_xid = 9}, back;
	checkpoint_recovery rec = {.commit_us = 5, .window_ms = 1000, .xids = xids, .n_xids = 2,
				   .ends = ends, .xids_after = 0x80, .creating = true,
				   .deletes_in_txn = true, .backfill = "{\"b\":1}",
				   .txn_counts = "{\"records\":1,\"rows\":1,\"begun\":true,\"topics\":{\"a\":1}}"};
	checkpoint_recovery none = {.commit_us = 5, .window_ms = 1000}, only_backfill = {.backfill = "{}"};
	checkpoint_recovery got = {0};
	char *text = checkpoint_encode_with(&cp, &rec, "s\"/");

	assert_string_equal(text, "{\"version\":1,\"slot\":\"s\\\"/\",\"lsn\":\"0/200\",\"tli\":2,"
				  "\"partial\":{\"nextlsn\":\"0/300\",\"rows\":4,\"xid\":9},"
				  "\"creating\":true,\"deletes_in_txn\":true,\"commit_time_us\":5,"
				  "\"window_ms\":1000,\"xids\":[4294967295,0],\"ends\":[240,16],"
				  "\"xids_after\":\"0/80\",\"backfill\":{\"b\":1},\"txn_counts\":{\"records\":1,"
				  "\"rows\":1,\"begun\":true,\"topics\":{\"a\":1}}}");
	assert_int_equal(decode_with(text, &back, &got), 0);
	assert_int_equal(got.n_xids, 2);
	assert_int_equal(got.xids[0], 4294967295u);
	checkpoint_recovery_free(&got);
	free(text);
	text = checkpoint_encode_with(&cp, &none, "s"); /* no xids, no ends recorded */
	assert_non_null(strstr(text, "\"window_ms\":1000,\"xids\":[]}"));
	free(text);
	cp = (checkpoint){.lsn = 0x200};
	text = checkpoint_encode_with(&cp, &only_backfill, "s"); /* nothing before it but the head */
	assert_string_equal(text, "{\"version\":1,\"slot\":\"s\",\"lsn\":\"0/200\",\"backfill\":{}}");
	free(text);
}

/*
 * The text a jansson array of each list gave (the writer before the lists were written by hand),
 * its numbers formatted by printf: an independent reference for the hand-written digits.
 */
static char *printf_reference(const checkpoint *cp, const checkpoint_recovery *rec, const char *head,
			      const char *tail)
{
	size_t cap = strlen(head) + strlen(tail) + rec->n_xids * 42 + 32, len;
	char *t = malloc(cap);

	len = (size_t)snprintf(t, cap, "%s,\"xids\":[", head);
	for (size_t i = 0; i < rec->n_xids; i++)
		len += (size_t)snprintf(t + len, cap - len, "%s%u", i ? "," : "", rec->xids[i]);
	len += (size_t)snprintf(t + len, cap - len, "],\"ends\":[");
	for (size_t i = 0; i < rec->n_xids; i++) {
		lsn_t next = i + 1 < rec->n_xids ? rec->ends[i + 1] : cp->lsn;
		len += (size_t)snprintf(t + len, cap - len, "%s%lld", i ? "," : "",
					(long long)(next - rec->ends[i]));
	}
	snprintf(t + len, cap - len, "]%s", tail);
	return t;
}

static void test_thousands_of_xids_are_the_bytes_jansson_writes_and_read_back_the_same(void **state)
{
	(void)state;
	enum { N = 5000 };
	uint32_t *xids = calloc(N, sizeof(uint32_t));
	lsn_t *ends = calloc(N, sizeof(lsn_t));
	checkpoint cp = {0}, back;
	checkpoint_recovery rec = {.commit_us = INT64_MAX, .window_ms = 0, .xids = xids, .n_xids = N,
				   .ends = ends, .creating = true,
				   .backfill = "{\"t\":\"\\u00e9\\\"\\u0001\",\"n\":-5,\"e\":[]}"};
	checkpoint_recovery got = {0};
	char *text, *want;

	for (size_t i = 0; i < N; i++) { /* every digit count, the extremes, distances of 0 */
		xids[i] = i % 3 == 0 ? UINT32_MAX - (uint32_t)i : (uint32_t)(i * 2654435761u >> (i % 32));
		ends[i] = i == 0 ? (lsn_t)1 << 62 : ends[i - 1] + (i % 7 == 0 ? 0 : (lsn_t)1 << (i % 40));
	}
	cp.lsn = ends[0] + (lsn_t)INT64_MAX; /* the farthest from the first end that is stored */
	text = checkpoint_encode_with(&cp, &rec, "s\"\\/\xc3\xa9\x01");
	want = printf_reference(&cp, &rec, "{\"version\":1,\"slot\":\"s\\\"\\\\/\xc3\xa9\\u0001\","
				"\"lsn\":\"BFFFFFFF/FFFFFFFF\",\"creating\":true,"
				"\"commit_time_us\":9223372036854775807,\"window_ms\":0",
				",\"backfill\":{\"t\":\"\xc3\xa9\\\"\\u0001\",\"n\":-5,\"e\":[]}}");
	assert_non_null(text);
	assert_string_equal(text, want);
	assert_int_equal(decode_with(text, &back, &got), 0);
	assert_int_equal(got.n_xids, N);
	assert_memory_equal(got.xids, xids, N * sizeof(uint32_t));
	assert_memory_equal(got.ends, ends, N * sizeof(lsn_t));
	checkpoint_recovery_free(&got);
	free(text);
	free(want);
	free(xids);
	free(ends);
}

static void test_a_slot_that_is_not_utf8_gives_no_text_rather_than_a_crash(void **state)
{
	(void)state;
	uint32_t xids[] = {7};
	checkpoint cp = {.lsn = 0x200};
	checkpoint_recovery rec = {.commit_us = 5, .window_ms = 1, .xids = xids, .n_xids = 1};

	assert_null(checkpoint_encode_with(&cp, NULL, "\xff"));
	assert_null(checkpoint_encode_with(&cp, &rec, "\xff"));
}

static void test_refuses_malformed_xid_ends(void **state)
{
	(void)state;
	checkpoint cp;
	checkpoint_recovery got = {0};
	static const char *const bad[] = {
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7,8],\"ends\":[1]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7],\"ends\":[1,2]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7],\"ends\":[-1]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7],\"ends\":[\"1\"]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7],\"ends\":1}",
		/* further back than the start of WAL */
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7],\"ends\":[513]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7,8],\"ends\":[1,512]}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[],\"xids_after\":5}",
		"{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[],\"xids_after\":\"80\"}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (decode_with(bad[i], &cp, &got) != -1)
			fail_msg("accepted [%s]", bad[i]);
	/* Exactly back to the start of WAL is still a position. */
	assert_int_equal(decode_with("{\"lsn\":\"0/200\",\"commit_time_us\":5,\"window_ms\":1,\"xids\":[7,8],"
				     "\"ends\":[0,512]}", &cp, &got), 0);
	assert_int_equal(got.ends[0], 0);
	assert_int_equal(got.ends[1], 0);
	checkpoint_recovery_free(&got);
}

/* Many positions through encode and decode. */
static void test_round_trip_many(void **state)
{
	(void)state;
	uint64_t x = 0x243F6A8885A308D3ull;

	for (int i = 0; i < 2000; i++) {
		checkpoint cp;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		cp.lsn = x >> (i % 64);
		cp.partial_nextlsn = i % 3 ? cp.lsn + (x & 0xFFFF) + 1 : 0;
		cp.partial_rows = cp.partial_nextlsn ? (x >> 20) % (i % 5 ? 100000 : INT64_MAX) : 0;
		round_trip(&cp, "outbox_relay", NULL);
	}
}

/* A window is the partition's last span offsets, read to its end. */
static void test_window_is_the_last_span_offsets_of_a_long_partition(void **state)
{
	(void)state;
	assert_int_equal(checkpoint_window_start(0, 100000, 100000, 2000), 98000);
	assert_int_equal(checkpoint_window_start(10, 100000, 100000, 2000), 98000);
}

/* A window never begins before the log start (compaction or deletion moved it; or a short
 * partition): the whole partition is then read, as before windows. */
static void test_window_never_begins_before_the_log_start(void **state)
{
	(void)state;
	assert_int_equal(checkpoint_window_start(99000, 100000, 100000, 2000), 99000);
	assert_int_equal(checkpoint_window_start(0, 500, 500, 2000), 0);
	assert_int_equal(checkpoint_window_start(0, 0, 0, 2000), 0); /* an empty partition */
	assert_int_equal(checkpoint_window_start(300, 300, 300, 2000), 300); /* emptied by deletion */
	assert_int_equal(checkpoint_window_start(400, 1000, 200, 2000), 400); /* a stale LSO */
}

/* An open transaction (the last stable offset) before the end: the window is the span offsets
 * before its first record and everything after it. The read_committed read stops there and says
 * what holds it, as before; a `status` (partial_ok) finds the newest checkpoint before it in the
 * first window, not after widening until end - span passes it, waiting at it in every round. */
static void test_window_is_the_span_before_an_earlier_open_transaction(void **state)
{
	(void)state;
	assert_int_equal(checkpoint_window_start(0, 100000, 50000, 2000), 48000);
	assert_int_equal(checkpoint_window_start(0, 100000, 99999, 2000), 97999);
	assert_int_equal(checkpoint_window_start(49000, 100000, 50000, 2000), 49000);
	assert_int_equal(checkpoint_window_start(0, 100000, 100500, 2000), 98000); /* asked later */
}

/* A window holding the key's newest record ends the read; when the snapshot record is wanted
 * too, only once that is in it, unless the key's newest record is a tombstone (no checkpoint, so
 * no state: reading on to the log start for it would be work for nothing). */
static void test_window_ends_the_read_once_it_holds_what_is_asked(void **state)
{
	(void)state;
	assert_true(checkpoint_window_enough(true, false, false, false, false));
	assert_false(checkpoint_window_enough(true, false, false, true, false));
	assert_true(checkpoint_window_enough(true, false, true, true, false));
	assert_true(checkpoint_window_enough(true, true, false, true, false)); /* a tombstone */
	assert_false(checkpoint_window_enough(false, false, true, true, false));
	assert_false(checkpoint_window_enough(false, false, false, false, false));
	assert_true(checkpoint_window_enough(false, false, false, true, true)); /* the whole topic */
}

/* Growing windows reach the log start in a few rounds: the read ends even with no checkpoint. */
static void test_growing_windows_reach_the_log_start(void **state)
{
	int rounds = 1;

	(void)state;
	for (int64_t span = CHECKPOINT_WINDOW; checkpoint_window_start(0, 1000000, 1000000, span) > 0;
	     span *= CHECKPOINT_WINDOW_GROWTH)
		rounds++;
	assert_int_equal(rounds, 4); /* 2,000, 16,000, 128,000, 1,024,000 offsets */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_whole_position),
		cmocka_unit_test(test_encode_partial),
		cmocka_unit_test(test_encode_escapes_slot),
		cmocka_unit_test(test_decode_accepts_variants),
		cmocka_unit_test(test_decode_uses_only_len_bytes),
		cmocka_unit_test(test_decode_rejects_malformed_json),
		cmocka_unit_test(test_decode_rejects_missing_or_bad_lsn),
		cmocka_unit_test(test_decode_rejects_bad_partial),
		cmocka_unit_test(test_round_trip_many),
		cmocka_unit_test(test_timeline_is_recorded_and_optional),
		cmocka_unit_test(test_xid_ends_are_stored_as_distances),
		cmocka_unit_test(test_split_transaction_counts_are_kept_as_written),
		cmocka_unit_test(test_every_field_comes_in_one_order_with_the_xids_between_jansson_parts),
		cmocka_unit_test(test_thousands_of_xids_are_the_bytes_jansson_writes_and_read_back_the_same),
		cmocka_unit_test(test_a_slot_that_is_not_utf8_gives_no_text_rather_than_a_crash),
		cmocka_unit_test(test_refuses_malformed_xid_ends),
		cmocka_unit_test(test_window_is_the_last_span_offsets_of_a_long_partition),
		cmocka_unit_test(test_window_never_begins_before_the_log_start),
		cmocka_unit_test(test_window_is_the_span_before_an_earlier_open_transaction),
		cmocka_unit_test(test_window_ends_the_read_once_it_holds_what_is_asked),
		cmocka_unit_test(test_growing_windows_reach_the_log_start),
	};
	return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
