/* fuzz_capture.c: libFuzzer target for relay/capture.c and snapshot.c's parsers: envelopes of decoded records, snapshot requests and stored progress. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "snapshot.h"
#include "w2j.h"

static relay_config *cfg;
static capture_config *entry;
static capture_column cols[3];
static int keys[2] = {0, 2};

/*
 * A table as the catalog would give it: key (id, doc), a column left out, REPLICA IDENTITY FULL
 * for odd input lengths (so both kinds of update are built).
 */
static capture_table table(char replident)
{
	capture_table t;
	const char *names[] = {"id", "secret", "doc"};

	memset(&t, 0, sizeof(t));
	for (int i = 0; i < 3; i++) {
		cols[i].name = (char *)names[i];
		cols[i].published = i != 1;
	}
	t.schema = "public";
	t.table = "users";
	t.name = "public.users";
	t.cfg = entry;
	t.topic = "cdc.public.users";
	t.cols = cols;
	t.n_cols = 3;
	t.keys = keys;
	t.n_keys = 2;
	t.replident = replident;
	return t;
}

static void setup(void)
{
	cfg = config_defaults(0, 1);
	entry = &cfg->captures[0];
	config_set_string(&entry->tables, "public.users");
	config_set_list(&entry->exclude_columns, &entry->n_exclude_columns, "secret");
	config_set_string(&cfg->slot, "fuzz");
	cfg->snapshot_chunk_rows = 10;
	log_set_level(LOG_LVL_ERROR);
}

static void check_msg(const route_msg *m)
{
	FUZZ_CHECK(m->topic && strcmp(m->topic, "cdc.public.users") == 0);
	if (m->key)
		fuzz_touch(m->key, m->key_len);
	FUZZ_CHECK(m->value != NULL);
	fuzz_touch(m->value, m->value_len);
	FUZZ_CHECK(m->value_len > 10 && memcmp(m->value, "{\"op\":\"", 7) == 0);
	FUZZ_CHECK(m->value[m->value_len - 1] == '}');
}

/* The input as a change of the table, and as a snapshot message and a stored state. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	const char *buf = (const char *)data, *why = NULL;
	w2j_record rec;
	route_msg m;
	capture_table *t = NULL;

	if (!ready) {
		setup();
		ready = true;
	}
	capture *cap = capture_new(cfg);
	capture_table tab = table(size % 2 ? 'f' : 'd');
	if (w2j_decode(buf, size, &rec, &why) == 0 && rec.action != W2J_BEGIN &&
	    rec.action != W2J_COMMIT && rec.action != W2J_MESSAGE) {
		capture_read(cap, &rec);
		(void)capture_stale(cap, &tab, &rec, rec.lsn + 1);
		tab.read_us = size % 3 ? 0 : INT64_MAX; /* read before or after any commit */
		tab.ddl_us = size % 2 ? INT64_MIN : INT64_MAX;
		tab.ddl_known = size % 5 != 0;
		FUZZ_CHECK(capture_toast_check(cap, &tab, &rec, size % 7 != 0) <= CAPTURE_TOAST_UNKNOWN);
		if (capture_build_key_change(cap, &tab, &rec, &m))
			check_msg(&m);
		if (capture_build(cap, &tab, &rec, &m, &why) == 0)
			check_msg(&m);
		else
			FUZZ_CHECK(why != NULL);
	}
	snapshot *s = snapshot_new(cfg, cap);
	snapshot_message(s, buf, size, &t);
	if (snapshot_load_state(s, buf, size) == 0) {
		char *text = snapshot_state_json(s);
		FUZZ_CHECK(snapshot_load_state(s, text, strlen(text)) == 0); /* what it writes, it reads */
		free(text);
	}
	snapshot_current(s);
	snapshot_free(s);
	capture_free(cap);
	return 0;
}
