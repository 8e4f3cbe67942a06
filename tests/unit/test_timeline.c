/* test_timeline.c: timeline history files read as PostgreSQL reads them, and checkpoints cut back to a fork. */
#include "unit.h"

#include "strbuf.h"
#include "timeline.h"

/* Looks tli up in history text of timeline current, through an exact-size heap copy. */
static timeline_found find(const char *text, uint32_t current, uint32_t tli, lsn_t *end)
{
	size_t len = strlen(text);
	char *buf = unit_dup(text, len);
	timeline_found f = timeline_switchpoint(buf, len, current, tli, end);

	free(buf);
	return f;
}

static void test_reads_the_file_postgresql_writes(void **state)
{
	(void)state;
	lsn_t end = 0;

	/* What a promotion writes (writeTimeLineHistory): parent, switchpoint, reason. */
	assert_int_equal(find("1\t0/39DD318\tno recovery target specified\n", 2, 1, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x39DD318);
	/* Timeline 4's history: every ancestor, oldest first. */
	const char *h4 = "1\t0/3000060\tno recovery target specified\n"
			 "\n"
			 "2\t0/5000148\tno recovery target specified\n"
			 "3\t1/A0000000\tat restore point \"before\"\n";
	assert_int_equal(find(h4, 4, 2, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x5000148);
	assert_int_equal(find(h4, 4, 1, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x3000060);
	assert_int_equal(find(h4, 4, 3, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x1A0000000ull);
}

static void test_comments_blank_lines_and_spacing(void **state)
{
	(void)state;
	lsn_t end = 0;

	/* Leading white space, '#' comments, CRLF, spaces instead of a tab, no final newline. */
	assert_int_equal(find("# written by hand\n  \n\t 1  0/10\tcrash\r\n   # 2\t0/20\n2\t0/30", 3, 2, &end),
			 TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x30);
	assert_int_equal(find("1\t0/10\r\n", 2, 1, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0x10);
	/* No reason at all, lower-case hex. */
	assert_int_equal(find("1\tab/cdef0123", 2, 1, &end), TIMELINE_ANCESTOR);
	assert_int_equal(end, 0xABCDEF0123ull);
}

static void test_not_an_ancestor(void **state)
{
	(void)state;
	lsn_t end = 77;

	assert_int_equal(find("", 2, 1, &end), TIMELINE_NOT_ANCESTOR);
	assert_int_equal(find("# nothing\n\n", 2, 1, &end), TIMELINE_NOT_ANCESTOR);
	/* Timeline 3 branched from 1: a checkpoint of timeline 2 is on another branch. */
	assert_int_equal(find("1\t0/10\tx\n", 3, 2, &end), TIMELINE_NOT_ANCESTOR);
	/* The file's own timeline, or a newer one, is never an ancestor. */
	assert_int_equal(find("1\t0/10\tx\n", 2, 2, &end), TIMELINE_NOT_ANCESTOR);
	assert_int_equal(find("1\t0/10\tx\n", 2, 5, &end), TIMELINE_NOT_ANCESTOR);
	assert_int_equal(end, 77); /* untouched */
}

static void test_refuses_what_postgresql_refuses(void **state)
{
	(void)state;
	lsn_t end;
	static const char *const bad[] = {
		"x\t0/10\n",           /* not a timeline id */
		"1\n",                 /* no switchpoint */
		"1\t\n",
		"1\t0/\n",
		"1\t/10\n",
		"1\t010\n",
		"1\t0x0/10\n",
		"-1\t0/10\n",
		"0\t0/10\n",           /* timelines start at 1 */
		"1\t0/10\n1\t0/20\n",  /* not increasing */
		"2\t0/10\n1\t0/20\n",
		"3\t0/10\n",           /* not below the file's timeline (3) */
		"4\t0/10\n",
		"4294967296\t0/10\n",  /* does not fit */
		"1\t123456789/10\n",   /* nine hex digits */
		"1\t0/123456789\n",
		"1\t0/10x\n",          /* something glued to the switchpoint */
		"1\t0/10\n\ngarbage\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (find(bad[i], 3, 1, &end) != TIMELINE_MALFORMED)
			fail_msg("accepted [%s]", bad[i]);
	/* A NUL byte inside is not a line end: the line is malformed. */
	assert_int_equal(timeline_switchpoint("1\t0/10\0\n", 8, 2, 1, &end), TIMELINE_MALFORMED);
	assert_int_equal(timeline_switchpoint("1\t0/10\n", 7, 2, 1, &end), TIMELINE_ANCESTOR);
}

/* A checkpoint at 0x1000 listing xids 10..14 that end at 0x100, 0x200, ... 0x500. */
typedef struct {
	checkpoint cp;
	checkpoint_recovery rec;
} stored;

static stored make_stored(lsn_t xids_after)
{
	stored s = {.cp = {.lsn = 0x1000, .tli = 1}};

	s.rec.commit_us = 5000000;
	s.rec.window_ms = 1000;
	s.rec.n_xids = 5;
	s.rec.xids = malloc(5 * sizeof(uint32_t));
	s.rec.ends = malloc(5 * sizeof(lsn_t));
	for (int i = 0; i < 5; i++) {
		s.rec.xids[i] = (uint32_t)(14 - i); /* commit order need not be xid order */
		s.rec.ends[i] = (lsn_t)(i + 1) * 0x100;
	}
	s.rec.xids_after = xids_after;
	return s;
}

static void test_cut_names_the_xids_beyond_the_fork(void **state)
{
	(void)state;
	stored s = make_stored(0x80);
	timeline_phantoms ph;

	assert_true(timeline_cut(&s.cp, &s.rec, 0x300, &ph));
	/* 0x300 is on both timelines (it ends exactly at the fork); 0x400 and 0x500 are not. */
	assert_int_equal(ph.n_xids, 2);
	assert_int_equal(ph.xids[0], 10); /* ascending */
	assert_int_equal(ph.xids[1], 11);
	assert_false(ph.maybe_more || ph.unnamed || ph.partial);
	assert_int_equal(s.cp.lsn, 0x300);
	assert_int_equal(s.rec.n_xids, 3); /* the others stay listed for a lost slot's recovery */
	assert_int_equal(s.rec.xids[2], 12);
	assert_int_equal(s.rec.commit_us, 5000000);
	timeline_phantoms_free(&ph);
	checkpoint_recovery_free(&s.rec);
}

static void test_cut_says_when_the_list_may_miss_some(void **state)
{
	(void)state;
	stored s = make_stored(0x280);
	timeline_phantoms ph;

	/* Outbox transactions ending at or before 0x280 may be unlisted: the fork lies before. */
	assert_true(timeline_cut(&s.cp, &s.rec, 0x250, &ph));
	assert_int_equal(ph.n_xids, 3);
	assert_true(ph.maybe_more);
	assert_int_equal(s.rec.xids_after, 0x250); /* never beyond the position */
	timeline_phantoms_free(&ph);
	checkpoint_recovery_free(&s.rec);

	s = make_stored(0); /* not recorded */
	assert_true(timeline_cut(&s.cp, &s.rec, 0x450, &ph));
	assert_int_equal(ph.n_xids, 1);
	assert_true(ph.maybe_more);
	timeline_phantoms_free(&ph);
	checkpoint_recovery_free(&s.rec);
}

static void test_cut_before_the_fork_changes_nothing(void **state)
{
	(void)state;
	stored s = make_stored(0x80);
	timeline_phantoms ph;

	assert_false(timeline_cut(&s.cp, &s.rec, 0x1000, &ph));
	assert_false(timeline_cut(&s.cp, &s.rec, 0x2000, &ph));
	assert_int_equal(s.cp.lsn, 0x1000);
	assert_int_equal(s.rec.n_xids, 5);
	assert_int_equal(ph.n_xids, 0);
	checkpoint_recovery_free(&s.rec);
}

static void test_cut_drops_a_partial_transaction_beyond_the_fork(void **state)
{
	(void)state;
	stored s = make_stored(0x80);
	timeline_phantoms ph;

	s.cp.partial_nextlsn = 0x3000;
	s.cp.partial_rows = 20000;
	s.cp.partial_xid = 99;
	/* The position is before the fork, the split transaction's commit after it. */
	assert_true(timeline_cut(&s.cp, &s.rec, 0x2000, &ph));
	assert_true(ph.partial);
	assert_int_equal(ph.partial_xid, 99);
	assert_int_equal(ph.partial_rows, 20000);
	assert_int_equal(ph.n_xids, 0);
	assert_false(ph.maybe_more);
	assert_int_equal(s.cp.lsn, 0x1000);
	assert_int_equal(s.cp.partial_nextlsn, 0);
	assert_int_equal(s.cp.partial_rows, 0);
	assert_int_equal(s.rec.n_xids, 5);
	timeline_phantoms_free(&ph);
	/* A split transaction that ends before the fork is on both timelines: kept. */
	s.cp.partial_nextlsn = 0x1800;
	s.cp.partial_rows = 5;
	assert_false(timeline_cut(&s.cp, &s.rec, 0x2000, &ph));
	assert_int_equal(s.cp.partial_nextlsn, 0x1800);
	checkpoint_recovery_free(&s.rec);
}

static void test_cut_without_recorded_ends(void **state)
{
	(void)state;
	stored s = make_stored(0x80);
	timeline_phantoms ph;

	free(s.rec.ends);
	s.rec.ends = NULL; /* an older relay's checkpoint, or right after a backfill */
	assert_true(timeline_cut(&s.cp, &s.rec, 0x300, &ph));
	assert_true(ph.unnamed);
	assert_int_equal(ph.n_xids, 0);
	/* Which of them the new timeline has is unknown, and it may give their numbers to others. */
	assert_int_equal(s.rec.n_xids, 0);
	assert_int_equal(s.cp.lsn, 0x300);
	checkpoint_recovery_free(&s.rec);

	/* No recovery fields at all. */
	checkpoint cp = {.lsn = 0x1000};
	checkpoint_recovery none = {0};
	assert_true(timeline_cut(&cp, &none, 0x300, &ph));
	assert_true(ph.unnamed);
	assert_int_equal(cp.lsn, 0x300);
	timeline_phantoms_free(&ph);
}

static void test_formats_xids_as_runs(void **state)
{
	(void)state;
	uint32_t xids[] = {3, 7, 8, 9, 11, 4294967294u, 4294967295u};
	strbuf b = {0};

	assert_int_equal(timeline_format_xids(&b, xids, 7, 1000), 7);
	assert_string_equal(strbuf_str(&b), "3, 7-9, 11, 4294967294-4294967295");
	strbuf_reset(&b);
	assert_int_equal(timeline_format_xids(&b, xids, 1, 1000), 1);
	assert_string_equal(strbuf_str(&b), "3");
	/* A limit stops after the run that reaches it; the rest comes with the next call. */
	strbuf_reset(&b);
	size_t n = timeline_format_xids(&b, xids, 7, 4);
	assert_int_equal(n, 4);
	assert_string_equal(strbuf_str(&b), "3, 7-9");
	strbuf_reset(&b);
	assert_int_equal(timeline_format_xids(&b, xids + n, 7 - n, 4), 3);
	assert_string_equal(strbuf_str(&b), "11, 4294967294-4294967295");
	strbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_the_file_postgresql_writes),
		cmocka_unit_test(test_comments_blank_lines_and_spacing),
		cmocka_unit_test(test_not_an_ancestor),
		cmocka_unit_test(test_refuses_what_postgresql_refuses),
		cmocka_unit_test(test_cut_names_the_xids_beyond_the_fork),
		cmocka_unit_test(test_cut_says_when_the_list_may_miss_some),
		cmocka_unit_test(test_cut_before_the_fork_changes_nothing),
		cmocka_unit_test(test_cut_drops_a_partial_transaction_beyond_the_fork),
		cmocka_unit_test(test_cut_without_recorded_ends),
		cmocka_unit_test(test_formats_xids_as_runs),
	};
	return cmocka_run_group_tests_name("timeline", tests, NULL, NULL);
}
