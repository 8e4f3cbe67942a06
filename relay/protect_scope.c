/* protect_scope.c: checks the protect rules' columns against the captured tables the catalog gave. */
#include "protect_scope.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

/* True when one of the glob patterns takes name. */
static bool scope_match(char *const *patterns, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (fnmatch(patterns[i], name, 0) == 0)
			return true;
	return false;
}

/* The column's index in t, or -1. */
static int scope_column(const capture_table *t, const char *name)
{
	for (int i = 0; i < t->n_cols; i++)
		if (strcmp(t->cols[i].name, name) == 0)
			return i;
	return -1;
}

/* True when column index c is one of t's key columns. */
static bool scope_is_key(const capture_table *t, int c)
{
	for (int i = 0; i < t->n_keys; i++)
		if (t->keys[i] == c)
			return true;
	return false;
}

/* Checks one column of rule idx against the tables: -1 with err when it cannot be protected. */
static int scope_check_column(const relay_config *cfg, int idx, const char *col,
			      capture_table *const *tables, int n, bool can_hash, bool clear_snapshots,
			      char *err, size_t errlen)
{
	const protect_config *p = &cfg->protects[idx];
	bool found = false;

	for (int i = 0; i < n; i++) {
		const capture_table *t = tables[i];
		int c;
		if (!scope_match(p->tables, p->n_tables, t->name) || (c = scope_column(t, col)) < 0)
			continue;
		found = true;
		if (!scope_is_key(t, c))
			continue;
		if (!can_hash) {
			snprintf(err, errlen, "%s:%d: protect[%d].columns: '%s' is a key column of %s, "
				 "and a protected key column is hashed in the record key: add the "
				 "credential protect-hash-key", cfg->path, p->line, idx, col, t->name);
			return -1;
		}
		if (clear_snapshots) {
			snprintf(err, errlen, "%s:%d: protect[%d].columns: '%s' is a key column of %s: "
				 "a snapshot stores its position (key values) in the checkpoint topic, "
				 "encrypted only with the encryption key: add the credential "
				 "protect-encrypt-key", cfg->path, p->line, idx, col, t->name);
			return -1;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s:%d: protect[%d].columns: '%s' is no column of any captured "
			 "table its tables take", cfg->path, p->line, idx, col);
		return -1;
	}
	return 0;
}

int protect_scope_check(const relay_config *cfg, capture_table *const *tables, int n,
			bool can_hash, bool clear_snapshots, char *err, size_t errlen)
{
	for (int i = 0; i < cfg->n_protects; i++)
		for (int j = 0; j < cfg->protects[i].n_columns; j++)
			if (scope_check_column(cfg, i, cfg->protects[i].columns[j], tables, n, can_hash,
					       clear_snapshots, err, errlen) < 0)
				return -1;
	return 0;
}
