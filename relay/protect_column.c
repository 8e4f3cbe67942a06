/* protect_column.c: which protect rule takes one column of a captured table, and its action. */
#include "protect_column.h"

#include <fnmatch.h>
#include <string.h>

/* True when rule p names column and one of its tables patterns takes table. */
static bool rule_takes(const protect_config *p, const char *table, const char *column)
{
	bool named = false;

	for (int i = 0; i < p->n_columns && !named; i++)
		named = strcmp(p->columns[i], column) == 0;
	for (int i = 0; named && i < p->n_tables; i++)
		if (fnmatch(p->tables[i], table, 0) == 0)
			return true;
	return false;
}

/* (Declared in protect_column.h: first rule wins; an unknown action counts as drop, as in transform.c.) */
int protect_column_action(const relay_config *cfg, const char *table, const char *column)
{
	for (int r = 0; cfg && r < cfg->n_protects; r++) {
		const protect_config *p = &cfg->protects[r];
		if (!rule_takes(p, table, column))
			continue;
		int kind = protect_kind_of(p->action);
		return kind < 0 ? (int)PROTECT_DROP : kind;
	}
	return -1;
}
