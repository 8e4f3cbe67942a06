/* w2j.c: decoding wal2json v2 records with the zero-copy scanner; one pass over each record. */
#include "w2j.h"

#include <string.h>

/* Reads a non-negative JSON integer (an xid); false for anything else. */
static bool span_to_u64(const json_span *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s->kind != JSON_NUMBER || s->len == 0 || s->len > 20)
		return false;
	for (size_t i = 0; i < s->len; i++) {
		char ch = s->ptr[i];
		if (ch < '0' || ch > '9')
			return false;
		uint64_t next = v * 10 + (uint64_t)(ch - '0');
		if (next / 10 != v)
			return false;
		v = next;
	}
	*out = v;
	return true;
}

static bool span_to_lsn(const json_span *s, lsn_t *out)
{
	return s->kind == JSON_STRING && !s->escaped && lsn_parse(s->ptr, s->len, out);
}

/* Stores one top-level member into the record; unknown keys are ignored (newer plugin versions). */
static int decode_member(w2j_record *rec, const json_span *key, const json_span *val,
			 json_span *action, const char **why)
{
	switch (key->len ? key->ptr[0] : 0) {
	case 'a':
		if (JSON_KEY_IS(key, "action"))
			*action = *val;
		break;
	case 'x':
		if (JSON_KEY_IS(key, "xid") && val->kind != JSON_NULL) {
			if (!span_to_u64(val, &rec->xid))
				return *why = "xid is not an unsigned integer", -1;
			rec->has_xid = true;
		}
		break;
	case 'l':
		if (JSON_KEY_IS(key, "lsn") && !span_to_lsn(val, &rec->lsn))
			return *why = "lsn is not an LSN string", -1;
		break;
	case 'n':
		if (JSON_KEY_IS(key, "nextlsn") && !span_to_lsn(val, &rec->nextlsn))
			return *why = "nextlsn is not an LSN string", -1;
		break;
	case 't':
		if (JSON_KEY_IS(key, "timestamp"))
			rec->timestamp = *val;
		else if (JSON_KEY_IS(key, "table"))
			rec->table = *val;
		else if (JSON_KEY_IS(key, "transactional"))
			rec->transactional = val->kind == JSON_TRUE;
		break;
	case 's':
		if (JSON_KEY_IS(key, "schema"))
			rec->schema = *val;
		break;
	case 'c':
		if (JSON_KEY_IS(key, "columns"))
			rec->columns = *val;
		else if (JSON_KEY_IS(key, "content"))
			rec->content = *val;
		break;
	case 'i':
		if (JSON_KEY_IS(key, "identity"))
			rec->identity = *val;
		break;
	case 'p':
		if (JSON_KEY_IS(key, "prefix"))
			rec->prefix = *val;
		break;
	default:
		break;
	}
	return 0;
}

/* Checks that the fields each kind of record needs are there and of the right JSON type. */
static int check_record(const w2j_record *rec, const char **why)
{
	switch (rec->action) {
	case W2J_BEGIN:
	case W2J_COMMIT:
		if (rec->nextlsn == LSN_INVALID)
			return *why = "B/C record without nextlsn (include-lsn is off?)", -1;
		return 0;
	case W2J_INSERT:
	case W2J_UPDATE:
	case W2J_DELETE:
	case W2J_TRUNCATE:
		if (rec->schema.kind != JSON_STRING || rec->table.kind != JSON_STRING)
			return *why = "change record without schema or table", -1;
		if ((rec->action == W2J_INSERT || rec->action == W2J_UPDATE) &&
		    rec->columns.kind != JSON_ARRAY)
			return *why = "insert or update record without columns array", -1;
		if (rec->action == W2J_DELETE && rec->identity.kind != JSON_ARRAY)
			return *why = "delete record without identity array", -1;
		if (rec->identity.kind != JSON_NONE && rec->identity.kind != JSON_ARRAY)
			return *why = "identity is not an array", -1;
		return 0;
	case W2J_MESSAGE:
		if (rec->prefix.kind != JSON_STRING || rec->content.kind != JSON_STRING)
			return *why = "message record without prefix or content", -1;
		return 0;
	}
	return *why = "unknown action", -1;
}

/* The members of one column object, the cursor inside it: 1, or -1 when it is not a column. */
static int read_column(json_cursor *it, w2j_column *col)
{
	json_span key, val;
	int r;

	memset(col, 0, sizeof(*col));
	while ((r = json_object_next(it, &key, &val)) == 1) {
		if (JSON_KEY_IS(&key, "name"))
			col->name = val;
		else if (JSON_KEY_IS(&key, "type"))
			col->type = val;
		else if (JSON_KEY_IS(&key, "value"))
			col->value = val;
	}
	if (r < 0 || col->name.kind != JSON_STRING)
		return -1;
	return 1;
}

/* Where w2j_decode keeps the columns of the last record (per thread: no allocation). */
static _Thread_local w2j_column kept_columns[W2J_KEPT_COLUMNS];

/*
 * Reads the columns array at the cursor into *val, keeping its columns as it goes so that they
 * are not scanned a second time. When the array is not shaped as columns (or is malformed), it
 * is read again as plain JSON: the record stays as valid or invalid as before, without columns.
 */
static int read_columns(json_cursor *it, w2j_record *rec, json_span *val)
{
	json_cursor start = *it;
	const char *open;
	size_t n = 0;
	int r;

	rec->cols = NULL;
	rec->n_cols = 0;
	if (json_enter_array(it) < 0)
		goto plain;
	open = it->p - 1;
	while ((r = json_array_next_enter(it)) == 1) {
		w2j_column col;
		if (read_column(it, &col) < 0)
			goto plain;
		if (n < W2J_KEPT_COLUMNS)
			kept_columns[n] = col;
		n++;
	}
	if (r < 0)
		goto plain;
	val->kind = JSON_ARRAY;
	val->escaped = false;
	val->ptr = open;
	val->len = (size_t)(it->p - open);
	if (n <= W2J_KEPT_COLUMNS) {
		rec->cols = kept_columns;
		rec->n_cols = n;
	}
	return 0;
plain:
	*it = start;
	return json_read_value(it, val);
}

int w2j_decode(const char *buf, size_t len, w2j_record *rec, const char **why)
{
	json_cursor it;
	json_span key, val, action = {0};
	int r;

	memset(rec, 0, sizeof(*rec));
	json_cursor_init(&it, buf, len);
	if (json_enter_object(&it) < 0)
		return *why = "not a JSON object", -1;
	while ((r = json_object_next_key(&it, &key)) == 1) {
		if (JSON_KEY_IS(&key, "columns") ? read_columns(&it, rec, &val) < 0
						  : json_read_value(&it, &val) < 0) {
			r = -1;
			break;
		}
		if (decode_member(rec, &key, &val, &action, why) < 0)
			return -1;
	}
	if (r < 0 || !json_at_end(&it))
		return *why = "malformed JSON object", -1;
	if (action.kind != JSON_STRING || action.len != 1)
		return *why = "missing or malformed action", -1;
	rec->action = (w2j_action)action.ptr[0];
	return check_record(rec, why);
}

int w2j_columns_open(json_cursor *it, const json_span *array)
{
	return json_array_open(it, array);
}

int w2j_columns_next(json_cursor *it, w2j_column *col)
{
	int r = json_array_next_enter(it);

	if (r <= 0)
		return r;
	return read_column(it, col);
}
