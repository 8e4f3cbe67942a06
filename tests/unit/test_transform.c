/* test_transform.c: field protection: JSON path selection and rewriting, each action, keys, dead letters. */
#include "unit.h"

#include <sys/stat.h>

#include "avro_change.h"
#include "config.h"
#include "protect.h"
#include "protect_action.h"
#include "protect_column.h"
#include "snapshot.h"
#include "strbuf.h"
#include "transform.h"

#define KEY_HEX "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

static char cred_dir[64];

/* Writes one credential file into the test's credentials directory. */
static void put_credential(const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", cred_dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void drop_credential(const char *name)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", cred_dir, name);
	unlink(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(cred_dir, sizeof(cred_dir), "/tmp/test_transform.XXXXXX");
	assert_non_null(mkdtemp(cred_dir));
	setenv("CREDENTIALS_DIRECTORY", cred_dir, 1);
	put_credential("protect-hash-key", KEY_HEX "\n");
	put_credential("protect-encrypt-key", KEY_HEX "\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	drop_credential("protect-hash-key");
	drop_credential("protect-encrypt-key");
	rmdir(cred_dir);
	return 0;
}

/* A rule: fields and columns as comma-separated words ("" for none). */
static protect_config *rule(relay_config *cfg, const char *fields, const char *columns,
			    const char *action)
{
	protect_config *p = config_add_protect(cfg);
	config_set_list(&p->fields, &p->n_fields, fields);
	config_set_list(&p->columns, &p->n_columns, columns);
	config_set_string(&p->action, action);
	return p;
}

/* The value an outbox record of event type et comes to. */
static char *outbox_value(transform *t, const char *et, const char *value, int *rc)
{
	route_header h = {"event_type", 10, et, strlen(et)};
	route_msg m = {.topic = "t", .key = "k", .key_len = 1, .value = value,
		       .value_len = strlen(value), .headers = &h, .n_headers = 1};
	record rec = {.kind = RECORD_OUTBOX, .source = "outbox.events", .msg = &m};
	const char *why = NULL;

	*rc = transform_apply(t, &rec, &why);
	return *rc < 0 ? strdup(why) : strndup(m.value, m.value_len);
}

static void test_an_outbox_field_is_hashed_with_hmac_sha256_in_hex(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/email,/bio", "", "hash");
	transform *t = transform_new(cfg, err, sizeof(err));
	assert_non_null(t);
	/*
	 * RFC 2104 HMAC-SHA-256 of each text under key 00 01 .. 1f (Python's hmac gives the same):
	 * one value over a 64-byte block, then another record (the context starts each one keyed).
	 */
	char *v = outbox_value(t, "UserRegistered",
			       "{\"id\": 7, \"email\": \"ana@example.com\", \"bio\": \"Ana Table lives at 12 Long "
			       "Road, Utrecht, and was born on the first of May 1990.\"}",
			       &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "{\"id\": 7, \"email\": "
			       "\"f7831e3410f19cf23c7e0817fb67c7de0f88c2d8ff66b2b28ce7099fa0705078\", \"bio\": "
			       "\"28b166333be529611b2827c3557c280c02e9cf7604d19989510baf71ce0e24fe\"}");
	free(v);
	v = outbox_value(t, "UserRegistered", "{\"email\": \"bo@example.org\"}", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "{\"email\": "
			       "\"ec2c240a2e2c3f857fdb16b0222e843ed9a823838da6645592b0b78c39a2d502\"}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_nested_paths_escapes_and_arrays_are_selected(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/document/number,/a~1b,/phones/*/n,/list/1", "", "mask")->keep_last = 2;
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "x",
			       "{\"document\":{\"type\":\"passport\",\"number\":\"X1234567\"},"
			       "\"a/b\":\"secret\",\"phones\":[{\"n\":\"5551234\"},{\"n\":\"5559876\"}],"
			       "\"list\":[\"keep\",\"hide\"],\"number\":\"untouched\"}",
			       &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "{\"document\":{\"type\":\"passport\",\"number\":\"******67\"},"
			       "\"a/b\":\"****et\",\"phones\":[{\"n\":\"*****34\"},{\"n\":\"*****76\"}],"
			       "\"list\":[\"keep\",\"**de\"],\"number\":\"untouched\"}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_mask_counts_utf8_characters_not_bytes(void **state)
{
	(void)state;
	strbuf b = {0};

	protect_mask(&b, "Zoë Jürgensen", strlen("Zoë Jürgensen"), 3);
	assert_string_equal(b.s, "**********sen");
	strbuf_reset(&b);
	protect_mask(&b, "日本語テキスト", strlen("日本語テキスト"), 2);
	assert_string_equal(b.s, "*****スト");
	strbuf_reset(&b);
	/* No longer than keep_last: masked whole, not published as it is. */
	protect_mask(&b, "ab", 2, 4);
	assert_string_equal(b.s, "**");
	strbuf_reset(&b);
	protect_mask(&b, "abcd", 4, 4);
	assert_string_equal(b.s, "****");
	strbuf_reset(&b);
	protect_mask(&b, "ñandú", strlen("ñandú"), 0);
	assert_string_equal(b.s, "*****");
	strbuf_free(&b);
}

static void test_mask_hides_short_values_whole_and_replaces_non_strings(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/a,/n,/o,/l", "", "mask")->keep_last = 4;
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "x", "{\"a\":\"abc\",\"n\":123456,\"o\":{\"k\":\"secret\"},"
					"\"l\":[\"x\",\"y\"]}", &rc);
	assert_int_equal(rc, 0);
	/* "abc" kept as it is would be in clear; a number's or object's text has no tail to keep. */
	assert_string_equal(v, "{\"a\":\"***\",\"n\":\"****\",\"o\":\"****\",\"l\":\"****\"}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_a_masked_tail_keeps_its_json_escapes(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/a,/b,/c", "", "mask")->keep_last = 3;
	transform *t = transform_new(cfg, err, sizeof(err));
	/* Decoded, masked, then written again as JSON: a kept quote, backslash or control byte is
	 * escaped as PostgreSQL escapes it; a masked one is a star like any other character. */
	char *v = outbox_value(t, "x", "{\"a\":\"secret\\\"q\\\\\",\"b\":\"x\\u0001\\ny\","
					"\"c\":\"\\\"\\tabc\"}", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "{\"a\":\"******\\\"q\\\\\",\"b\":\"*\\u0001\\ny\","
			       "\"c\":\"**abc\"}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_a_masked_tail_keeps_whole_utf8_characters_and_escapes_only_what_postgresql_does(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/a,/b,/c", "", "mask")->keep_last = 2;
	transform *t = transform_new(cfg, err, sizeof(err));
	/* \u escapes are decoded: the kept characters come out as UTF-8 (DEL as it is), a kept
	 * newline as \n; a masked multi-byte character is one star. */
	char *v = outbox_value(t, "x", "{\"a\":\"\\u00e9t\\u00e9\\n\",\"b\":\"日本\\u8a9e\","
					"\"c\":\"x\\ud83d\\ude00\\u007f\"}", &rc);
	assert_int_equal(rc, 0);
	assert_string_equal(v, "{\"a\":\"**é\\n\",\"b\":\"*本語\",\"c\":\"*😀\x7f\"}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_keys_are_taken_by_their_decoded_text_whatever_their_length(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256], a64[65], a69[70], a70[71], fields[160], value[512];
	int rc;

	memset(a64, 'a', 64);
	a64[64] = '\0';
	memset(a69, 'a', 69);
	a69[69] = '\0';
	memset(a70, 'a', 70);
	a70[70] = '\0';
	/* Long keys share one length class: a 64-byte key is compared with a 70-byte part. */
	snprintf(fields, sizeof(fields), "/a~1b,/t~0,/%s,/x/*", a70);
	rule(cfg, fields, "", "mask")->keep_last = 0;
	transform *t = transform_new(cfg, err, sizeof(err));
	snprintf(value, sizeof(value),
		 "{\"a\\/b\":\"v\",\"a/b\":\"v\",\"aab\":\"k\",\"t~\":\"v\",\"t\\u007e\":\"v\","
		 "\"%s\":\"k\",\"%s\":\"v\",\"%s\\u0061\":\"v\",\"x\":{\"\\u00e9\":\"v\",\"\":\"v\"}}",
		 a64, a70, a69);
	char *v = outbox_value(t, "x", value, &rc);
	assert_int_equal(rc, 0);
	snprintf(value, sizeof(value),
		 "{\"a\\/b\":\"*\",\"a/b\":\"*\",\"aab\":\"k\",\"t~\":\"*\",\"t\\u007e\":\"*\","
		 "\"%s\":\"k\",\"%s\":\"*\",\"%s\\u0061\":\"*\",\"x\":{\"\\u00e9\":\"*\",\"\":\"*\"}}",
		 a64, a70, a69);
	assert_string_equal(v, value);
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_drop_removes_members_and_their_commas(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	rule(cfg, "/a,/c,/e", "", "drop");
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "x", "{\"a\":1, \"b\":2, \"c\":3, \"d\":4, \"e\":5}", &rc);
	assert_string_equal(v, "{\"b\":2, \"d\":4}");
	free(v);
	v = outbox_value(t, "x", "{\"a\":1,\"c\":{\"x\":[1,2]},\"e\":5}", &rc);
	assert_string_equal(v, "{}");
	free(v);
	v = outbox_value(t, "x", "{\"b\":1,\"c\":3,\"e\":5}", &rc);
	assert_string_equal(v, "{\"b\":1}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_drops_around_members_no_path_can_take_keep_their_commas_right(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	/* Keys of a length no path has are passed over by their length alone: they still end a
	 * run of dropped members, and the commas come out as when every member is compared. */
	rule(cfg, "/a,/c", "", "drop");
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "x", "{\"a\":1, \"bb\":2, \"c\":3, \"dd\":{\"a\":4}}", &rc);
	assert_string_equal(v, "{\"bb\":2, \"dd\":{\"a\":4}}");
	free(v);
	v = outbox_value(t, "x", "{\"a\":1,\"c\":[2],\"zzz\":3}", &rc);
	assert_string_equal(v, "{\"zzz\":3}");
	free(v);
	v = outbox_value(t, "x", "{\"zz\":0,\"a\":1,\"c\":2}", &rc);
	assert_string_equal(v, "{\"zz\":0}");
	free(v);
	v = outbox_value(t, "x", "{\"\\u0061\":1,\"zz\":0}", &rc); /* an escaped "a" is compared */
	assert_string_equal(v, "{\"zz\":0}");
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_only_the_named_event_types_are_protected_and_first_rule_wins(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];
	int rc;

	protect_config *p = rule(cfg, "/email", "", "drop");
	config_set_list(&p->event_types, &p->n_event_types, "User*");
	rule(cfg, "/email,/name", "", "mask")->keep_last = 1;
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "UserCreated", "{\"email\":\"a@b\",\"name\":\"Ana\"}", &rc);
	assert_string_equal(v, "{\"name\":\"**a\"}");
	free(v);
	v = outbox_value(t, "OrderPlaced", "{\"email\":\"a@b\",\"name\":null}", &rc);
	assert_string_equal(v, "{\"email\":\"**b\",\"name\":null}");
	free(v);
	/* Nothing to protect: the text is the one built, byte for byte. */
	v = outbox_value(t, "OrderPlaced", "{ \"total\" : 12.50 }", &rc);
	assert_string_equal(v, "{ \"total\" : 12.50 }");
	free(v);
	v = outbox_value(t, "OrderPlaced", "not json", &rc);
	assert_int_equal(rc, -1);
	assert_non_null(strstr(v, "not valid JSON"));
	free(v);
	transform_free(t);
	config_free(cfg);
}

static void test_encrypted_values_decrypt_to_the_original_with_the_key(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	unsigned char key[PROTECT_KEY_BYTES];
	char err[256], why[128];
	strbuf clear = {0};
	int rc;

	rule(cfg, "/dob,/score", "", "encrypt");
	config_set_string(&cfg->protect_key_id, "2026-12");
	transform *t = transform_new(cfg, err, sizeof(err));
	char *v = outbox_value(t, "x", "{\"dob\":\"1990-02-03 \\u00e9\",\"score\":0.97}", &rc);
	assert_int_equal(rc, 0);
	const char *e1 = strstr(v, "enc:v1:2026-12:"), *q = e1 ? strchr(e1, '"') : NULL;
	assert_non_null(q);
	assert_int_equal(protect_key_parse(KEY_HEX, key, why, sizeof(why)), 0);
	assert_int_equal(protect_decrypt(&clear, key, e1, (size_t)(q - e1)), 0);
	assert_string_equal(clear.s, "1990-02-03 é");
	const char *e2 = strstr(q, "enc:v1:2026-12:"), *q2 = e2 ? strchr(e2, '"') : NULL;
	strbuf_reset(&clear);
	assert_int_equal(protect_decrypt(&clear, key, e2, (size_t)(q2 - e2)), 0);
	assert_string_equal(clear.s, "0.97");
	/* A changed byte does not authenticate; another key does not open it. */
	char *bad = strndup(e1, (size_t)(q - e1));
	bad[20] = bad[20] == 'A' ? 'B' : 'A';
	assert_int_equal(protect_decrypt(&clear, key, bad, strlen(bad)), -1);
	key[0] ^= 1;
	assert_int_equal(protect_decrypt(&clear, key, e1, (size_t)(q - e1)), -1);
	/* A fresh nonce each time: the same clear text encrypts differently. */
	char *v2 = outbox_value(t, "x", "{\"dob\":\"1990-02-03 \\u00e9\",\"score\":0.97}", &rc);
	assert_string_not_equal(v, v2);
	free(bad);
	free(v);
	free(v2);
	strbuf_free(&clear);
	transform_free(t);
	config_free(cfg);
}

static void test_captured_columns_are_protected_in_after_before_and_key(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *why = NULL;

	protect_config *p = rule(cfg, "", "email", "hash");
	config_set_list(&p->tables, &p->n_tables, "public.*");
	transform *t = transform_new(cfg, err, sizeof(err));
	const char *value = "{\"op\":\"u\",\"before\":{\"email\":\"ana@example.com\",\"n\":1},"
			    "\"after\":{\"email\":\"ana@example.com\",\"n\":2},\"source\":{}}";
	route_msg m = {.topic = "t", .key = "{\"email\":\"ana@example.com\"}", .key_len = 27,
		       .value = value, .value_len = strlen(value)};
	record rec = {.kind = RECORD_CHANGE, .source = "public.users", .msg = &m};
	assert_int_equal(transform_apply(t, &rec, &why), 0);
	const char *h = "f7831e3410f19cf23c7e0817fb67c7de0f88c2d8ff66b2b28ce7099fa0705078";
	char want[512];
	snprintf(want, sizeof(want), "{\"op\":\"u\",\"before\":{\"email\":\"%s\",\"n\":1},"
		 "\"after\":{\"email\":\"%s\",\"n\":2},\"source\":{}}", h, h);
	assert_int_equal(m.value_len, strlen(want));
	assert_memory_equal(m.value, want, m.value_len);
	snprintf(want, sizeof(want), "{\"email\":\"%s\"}", h);
	assert_int_equal(m.key_len, strlen(want));
	assert_memory_equal(m.key, want, m.key_len);
	/* Another schema's table is not taken by public.*. */
	m = (route_msg){.topic = "t", .value = value, .value_len = strlen(value)};
	rec.source = "audit.users";
	assert_int_equal(transform_apply(t, &rec, &why), 0);
	assert_ptr_equal(m.value, value);
	transform_free(t);
	config_free(cfg);
}

/*
 * A column is a name: a rule's column "*" takes only a column named "*" (in after, before and
 * the key), never every column, as the Avro schemas derive it (protect_column.h).
 */
static void test_a_column_named_star_is_only_that_column_not_every_one(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *why = NULL;

	rule(cfg, "", "*", "mask");
	transform *t = transform_new(cfg, err, sizeof(err));
	assert_non_null(t);
	const char *value = "{\"op\":\"u\",\"before\":{\"*\":\"abcdefgh\",\"id\":1,\"email\":\"a@b.c\"},"
			    "\"after\":{\"*\":\"abcdefgh\",\"id\":1,\"email\":\"a@b.c\"},\"source\":{}}";
	route_msg m = {.topic = "t", .key = "{\"id\":1}", .key_len = 8, .value = value,
		       .value_len = strlen(value)};
	record rec = {.kind = RECORD_CHANGE, .source = "public.users", .msg = &m};
	assert_int_equal(transform_apply(t, &rec, &why), 0);
	const char *want = "{\"op\":\"u\",\"before\":{\"*\":\"****efgh\",\"id\":1,\"email\":\"a@b.c\"},"
			   "\"after\":{\"*\":\"****efgh\",\"id\":1,\"email\":\"a@b.c\"},\"source\":{}}";
	assert_int_equal(m.value_len, strlen(want));
	assert_memory_equal(m.value, want, m.value_len);
	assert_int_equal(m.key_len, 8);
	assert_memory_equal(m.key, "{\"id\":1}", 8);
	assert_int_equal(protect_column_action(cfg, "public.users", "email"), -1);
	assert_int_equal(protect_column_action(cfg, "public.users", "*"), PROTECT_MASK);
	transform_free(t);
	config_free(cfg);
}

/*
 * The Avro schema the rules derive (avro_change.h) holds exactly what this stage makes of a
 * change: an update of a REPLICA IDENTITY FULL table, before and after, nulls in protected
 * nullable columns, a NOT NULL date hashed, a bigint masked, a numeric encrypted, a jsonb
 * object hashed, a NOT NULL int and the key column dropped (hashed in the key). It converts by
 * the table's own schema (no variant for unknown columns or missing values), the key too.
 */
static void test_the_avro_schema_the_rules_derive_fits_what_the_stage_makes(void **state)
{
	static const char *const names[] = {"id", "dob", "doc", "score", "age", "note", "name"};
	static const char *const types[] = {"bigint", "date", "bigint", "numeric", "integer", "jsonb",
					    "text"};
	static const bool not_null[] = {true, true, false, false, true, false, false};
	static const char env[] =
		"{\"op\":\"u\",\"before\":{\"id\":1,\"dob\":\"1984-02-29\",\"doc\":null,"
		"\"score\":0.98731,\"age\":41,\"note\":{\"a\":[1,2]},\"name\":\"Ana\"},"
		"\"after\":{\"id\":1,\"dob\":\"1984-02-29\",\"doc\":4400123456789,\"score\":null,"
		"\"age\":42,\"note\":null,\"name\":null},\"source\":{\"lsn\":\"0/16B3748\",\"xid\":7,"
		"\"ts\":null,\"schema\":\"public\",\"table\":\"idv\",\"snapshot\":false}}";
	capture_column cols[7];
	int keys[1] = {0};
	capture_table tb = {.schema = "public", .table = "idv", .name = "public.idv", .cols = cols,
			    .n_cols = 7, .keys = keys, .n_keys = 1, .replident = 'f', .catalog_lsn = 1};
	avro_change_protect prot[7];
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *why = NULL;
	char *out;
	size_t len;
	strbuf want = {0};
	(void)state;

	memset(cols, 0, sizeof(cols));
	for (int i = 0; i < 7; i++)
		cols[i] = (capture_column){.name = (char *)names[i], .type_name = (char *)types[i],
					   .not_null = not_null[i], .published = true};
	rule(cfg, "", "dob,note", "hash");
	rule(cfg, "", "doc", "mask");
	rule(cfg, "", "score", "encrypt");
	rule(cfg, "", "age,id", "drop");
	config_set_string(&cfg->protect_key_id, "k1");
	transform *t = transform_new(cfg, err, sizeof(err));
	assert_non_null(t);
	route_msg m = {.topic = "t", .key = "{\"id\":1}", .key_len = 8, .value = env,
		       .value_len = sizeof(env) - 1};
	record rec = {.kind = RECORD_CHANGE, .source = tb.name, .table = &tb, .msg = &m};
	assert_int_equal(transform_apply(t, &rec, &why), 0);
	avro_change *a = avro_change_new("app", cfg);
	if (avro_change_convert(a, &tb, m.value, m.value_len, 0, &out, &len, &why) < 0)
		fail_msg("the value: %s", why);
	for (int i = 0; i < 7; i++) {
		int kind = protect_column_action(cfg, tb.name, names[i]);
		prot[i] = kind < 0 ? AVRO_CHANGE_CLEAR : kind == PROTECT_DROP ? AVRO_CHANGE_DROPPED
									: AVRO_CHANGE_PROTECTED;
	}
	avro_change_schema_with(&want, &tb, "app", NULL, 0, false, prot);
	assert_string_equal(avro_change_last_schema(a), strbuf_str(&want)); /* not a variant */
	assert_non_null(strstr(want.s, "{\"name\":\"dob\",\"type\":\"string\"}"));
	assert_null(strstr(want.s, "\"age\""));
	if (avro_change_convert_key(a, &tb, m.key, m.key_len, 0, &out, &len, &why) < 0)
		fail_msg("the key: %s", why);
	strbuf_reset(&want);
	avro_change_key_schema(&want, &tb, "app", prot);
	assert_string_equal(avro_change_last_schema(a), strbuf_str(&want));
	assert_non_null(strstr(want.s, "{\"name\":\"id\",\"type\":\"string\"}"));
	strbuf_free(&want);
	avro_change_free(a);
	transform_free(t);
	config_free(cfg);
}

static void test_dead_letters_are_encrypted_whole_and_need_the_encryption_key(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256], why[128];
	unsigned char key[PROTECT_KEY_BYTES];
	strbuf clear = {0};
	const char *raw = "{\"action\":\"I\",\"columns\":[{\"name\":\"email\",\"value\":\"a@b\"}]}";
	route_header h = {"dlq_reason", 10, "r", 1};
	route_msg m = {.topic = "dlq", .key = "k", .key_len = 1, .value = raw,
		       .value_len = strlen(raw), .headers = &h, .n_headers = 1};

	rule(cfg, "/email", "", "hash");
	transform *t = transform_new(cfg, err, sizeof(err));
	transform_dead_letter(t, "outbox.events", &m);
	assert_int_equal(m.n_headers, 2);
	assert_memory_equal(m.headers[1].value, "encrypted", 9);
	assert_int_equal(protect_key_parse(KEY_HEX, key, why, sizeof(why)), 0);
	assert_int_equal(protect_decrypt(&clear, key, m.value, m.value_len), 0);
	assert_string_equal(clear.s, raw);
	transform_free(t);

	/* With a dead-letter topic, no encryption key: refused at start, never a withheld row. */
	drop_credential("protect-encrypt-key");
	assert_null(transform_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: protect rules and a dead-letter topic need the encryption "
				    "key"));
	assert_non_null(strstr(err, "protect-encrypt-key"));
	/* Without one (relay.on_error = "stop"), the relay stops on a bad row: no dead letters. */
	cfg->dead_letter = false;
	t = transform_new(cfg, err, sizeof(err));
	assert_non_null(t);
	transform_free(t);
	put_credential("protect-encrypt-key", KEY_HEX);
	strbuf_free(&clear);
	config_free(cfg);
}

static void test_a_dead_letter_key_gets_the_column_rules_once(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *why = NULL, *raw = "{\"action\":\"D\"}";
	const char *h = "{\"email\":\"f7831e3410f19cf23c7e0817fb67c7de0f88c2d8ff66b2b28ce7099fa0705078\"}";

	protect_config *p = rule(cfg, "", "email", "hash");
	config_set_list(&p->tables, &p->n_tables, "public.*");
	transform *t = transform_new(cfg, err, sizeof(err));
	/* A key as capture built it (the row failed before the stage): protected here. */
	route_msg m = {.topic = "dlq", .key = "{\"email\":\"ana@example.com\"}", .key_len = 27,
		       .value = raw, .value_len = strlen(raw)};
	transform_dead_letter(t, "public.users", &m);
	assert_int_equal(m.key_len, strlen(h));
	assert_memory_equal(m.key, h, m.key_len);
	/* A key the stage protected already is not hashed twice. */
	const char *value = "{\"op\":\"c\",\"before\":null,\"after\":{\"email\":\"ana@example.com\"}}";
	m = (route_msg){.topic = "t", .key = "{\"email\":\"ana@example.com\"}", .key_len = 27,
			.value = value, .value_len = strlen(value)};
	record rec = {.kind = RECORD_CHANGE, .source = "public.users", .msg = &m};
	assert_int_equal(transform_apply(t, &rec, &why), 0);
	m.value = raw;
	m.value_len = strlen(raw);
	transform_dead_letter(t, "public.users", &m);
	assert_memory_equal(m.key, h, strlen(h));
	/* A table no rule takes (and no fields rule): the dead letter is left as it is. */
	m = (route_msg){.topic = "dlq", .value = raw, .value_len = strlen(raw)};
	transform_dead_letter(t, "audit.log", &m);
	assert_ptr_equal(m.value, raw);
	assert_int_equal(m.n_headers, 0);
	transform_free(t);
	config_free(cfg);
}

static void test_a_protected_key_column_is_hashed_in_the_key_whatever_the_action(void **state)
{
	(void)state;
	const char *actions[] = {"drop", "mask", "encrypt"};
	const char *h = "{\"email\":\"f7831e3410f19cf23c7e0817fb67c7de0f88c2d8ff66b2b28ce7099fa0705078\"}";

	for (int i = 0; i < 3; i++) {
		relay_config *cfg = config_defaults(0, 1);
		char err[256];
		const char *why = NULL;
		const char *value = "{\"op\":\"c\",\"before\":null,\"after\":{\"email\":\"ana@example.com\"}}";
		rule(cfg, "", "email", actions[i]);
		transform *t = transform_new(cfg, err, sizeof(err));
		assert_non_null(t);
		route_msg m = {.topic = "t", .key = "{\"email\":\"ana@example.com\"}", .key_len = 27,
			       .value = value, .value_len = strlen(value)};
		record rec = {.kind = RECORD_CHANGE, .source = "public.users", .msg = &m};
		assert_int_equal(transform_apply(t, &rec, &why), 0);
		/* Deterministic, unique, joinable: the key is the keyed hash, never {} or a mask. */
		assert_int_equal(m.key_len, strlen(h));
		assert_memory_equal(m.key, h, m.key_len);
		/* The value keeps the rule's own action. */
		assert_null(memmem(m.value, m.value_len, "ana@example.com", 15));
		assert_null(memmem(m.value, m.value_len, h + 10, 64));
		transform_free(t);
		config_free(cfg);
	}
}

static void test_a_dead_letter_key_that_cannot_be_protected_is_withheld(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *raw = "{\"action\":\"D\"}";

	rule(cfg, "", "email", "hash");
	transform *t = transform_new(cfg, err, sizeof(err));
	route_msg m = {.topic = "dlq", .key = "{\"email\":\"ana@exa", .key_len = 18, .value = raw,
		       .value_len = strlen(raw)};
	transform_dead_letter(t, "public.users", &m);
	assert_null(m.key);
	assert_int_equal(m.n_headers, 2);
	assert_memory_equal(m.headers[0].name, "dlq_key_withheld", 16);
	assert_memory_equal(m.headers[1].name, "dlq_protected", 13);
	assert_memory_equal(m.headers[1].value, "encrypted", 9);
	transform_free(t);
	config_free(cfg);
}

static void test_dead_letters_of_a_captured_table_no_rule_takes_stay_as_they_are(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 1);
	char err[256];
	const char *raw = "{\"action\":\"I\"}";

	config_set_string(&cfg->sources[0].table, "outbox.events");
	config_set_string(&cfg->captures[0].tables, "audit.*");
	rule(cfg, "/email", "", "hash");
	transform *t = transform_new(cfg, err, sizeof(err));
	route_msg m = {.topic = "dlq", .value = raw, .value_len = strlen(raw)};
	transform_dead_letter(t, "audit.log", &m);
	assert_ptr_equal(m.value, raw);
	assert_int_equal(m.n_headers, 0);
	/* The outbox source: its event type is not known from the raw row, so fields rules count. */
	transform_dead_letter(t, "outbox.events", &m);
	assert_int_equal(m.n_headers, 1);
	assert_memory_equal(m.headers[0].value, "encrypted", 9);
	transform_free(t);
	config_free(cfg);
}

static void test_a_path_the_parser_refuses_stops_the_start_instead_of_being_skipped(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[256];

	rule(cfg, "/ok,/first~name", "", "drop");
	assert_null(transform_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, ":1: protect[0].fields: '/first~name' is not a JSON path"));
	config_free(cfg);
}

static void test_a_snapshot_position_is_stored_sealed_with_the_encryption_key(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(0, 1);
	char err[256];
	const char *clear = "{\"version\":1,\"done\":[],\"queue\":[\"public.people\"],"
			    "\"after\":[\"ana@example.com\"],\"table_rows\":10}";

	rule(cfg, "", "email", "hash");
	transform *t = transform_new(cfg, err, sizeof(err));
	snapshot *s = snapshot_new(cfg, NULL);
	snapshot_protect(s, t);
	/* A position stored in clear before is still read; it is written back sealed. */
	assert_int_equal(snapshot_load_state(s, clear, strlen(clear)), 0);
	char *sealed = snapshot_state_json(s);
	assert_null(strstr(sealed, "ana@example.com"));
	assert_non_null(strstr(sealed, "\"after_sealed\":\"enc:v1:k1:"));
	/* It opens to the same position. */
	snapshot *again = snapshot_new(cfg, NULL);
	snapshot_protect(again, t);
	assert_int_equal(snapshot_load_state(again, sealed, strlen(sealed)), 0);
	char *back = snapshot_state_json(again);
	assert_non_null(strstr(back, "\"after_sealed\":\"enc:v1:k1:"));
	snapshot_free(again);
	/* Without the key it cannot be opened: refused, not taken for "from the start". */
	snapshot *keyless = snapshot_new(cfg, NULL);
	assert_int_equal(snapshot_load_state(keyless, sealed, strlen(sealed)), -1);
	snapshot_free(keyless);
	free(back);
	free(sealed);
	snapshot_free(s);
	transform_free(t);
	config_free(cfg);
}

static void test_a_missing_or_short_key_stops_the_start_with_one_line(void **state)
{
	(void)state;
	relay_config *cfg = config_defaults(1, 0);
	char err[512];

	rule(cfg, "/email", "", "hash");
	drop_credential("protect-hash-key");
	assert_null(transform_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "protect[0] hashes with the key of the systemd credential "
				    "protect-hash-key, which is missing"));
	assert_null(strchr(err, '\n'));
	put_credential("protect-hash-key", "00112233");
	assert_null(transform_new(cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "protect-hash-key is 8 hex digits; it must be 64"));
	put_credential("protect-hash-key", KEY_HEX);
	transform *t = transform_new(cfg, err, sizeof(err));
	assert_non_null(t);
	transform_free(t);
	config_free(cfg);
}

static void test_a_credential_is_read_whole_without_its_newline(void **state)
{
	(void)state;
	char big[1001];

	memset(big, 'k', 1000);
	big[1000] = '\0';
	put_credential("long-secret", big);
	char *text = config_read_credential("long-secret");
	assert_string_equal(text, big); /* past the reader's first buffers */
	free(text);
	put_credential("long-secret", "abc\r\n");
	text = config_read_credential("long-secret");
	assert_string_equal(text, "abc");
	free(text);
	drop_credential("long-secret");
	assert_null(config_read_credential("long-secret"));
}

static void test_paths_are_parsed_as_json_pointers(void **state)
{
	(void)state;
	protect_path p;

	assert_int_equal(protect_path_parse("/a~0b/c~1d", 0, false, &p), 0);
	assert_int_equal(p.depth, 2);
	assert_string_equal(p.parts[0], "a~b");
	assert_string_equal(p.parts[1], "c/d");
	protect_path_free(&p);
	assert_int_equal(protect_path_parse("email", 0, false, &p), -1);
	assert_int_equal(protect_path_parse("/a//b", 0, false, &p), -1);
	assert_int_equal(protect_path_parse("/a~2", 0, false, &p), -1);
	assert_int_equal(protect_path_parse("/", 0, false, &p), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_an_outbox_field_is_hashed_with_hmac_sha256_in_hex),
		cmocka_unit_test(test_nested_paths_escapes_and_arrays_are_selected),
		cmocka_unit_test(test_mask_counts_utf8_characters_not_bytes),
		cmocka_unit_test(test_mask_hides_short_values_whole_and_replaces_non_strings),
		cmocka_unit_test(test_a_masked_tail_keeps_its_json_escapes),
		cmocka_unit_test(test_a_masked_tail_keeps_whole_utf8_characters_and_escapes_only_what_postgresql_does),
		cmocka_unit_test(test_keys_are_taken_by_their_decoded_text_whatever_their_length),
		cmocka_unit_test(test_drop_removes_members_and_their_commas),
		cmocka_unit_test(test_drops_around_members_no_path_can_take_keep_their_commas_right),
		cmocka_unit_test(test_only_the_named_event_types_are_protected_and_first_rule_wins),
		cmocka_unit_test(test_encrypted_values_decrypt_to_the_original_with_the_key),
		cmocka_unit_test(test_captured_columns_are_protected_in_after_before_and_key),
		cmocka_unit_test(test_dead_letters_are_encrypted_whole_and_need_the_encryption_key),
		cmocka_unit_test(test_a_dead_letter_key_gets_the_column_rules_once),
		cmocka_unit_test(test_a_protected_key_column_is_hashed_in_the_key_whatever_the_action),
		cmocka_unit_test(test_a_column_named_star_is_only_that_column_not_every_one),
		cmocka_unit_test(test_the_avro_schema_the_rules_derive_fits_what_the_stage_makes),
		cmocka_unit_test(test_a_dead_letter_key_that_cannot_be_protected_is_withheld),
		cmocka_unit_test(test_dead_letters_of_a_captured_table_no_rule_takes_stay_as_they_are),
		cmocka_unit_test(test_a_path_the_parser_refuses_stops_the_start_instead_of_being_skipped),
		cmocka_unit_test(test_a_snapshot_position_is_stored_sealed_with_the_encryption_key),
		cmocka_unit_test(test_a_missing_or_short_key_stops_the_start_with_one_line),
		cmocka_unit_test(test_a_credential_is_read_whole_without_its_newline),
		cmocka_unit_test(test_paths_are_parsed_as_json_pointers),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
