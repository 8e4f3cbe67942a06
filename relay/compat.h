/* compat.h: the start-time check of the schema files against the registry's compatibility rules, for every subject they are known to go to. */
#ifndef RELAY_COMPAT_H
#define RELAY_COMPAT_H

#include <stddef.h>

#include "config.h"
#include "contract.h"
#include "registry.h"

/* What the check came to. */
typedef enum {
	COMPAT_OK,      /* every file that would be registered may be */
	COMPAT_DOWN,    /* the registry did not answer (err): ask again later */
	COMPAT_REFUSED, /* a file is incompatible with a subject: err is the one line to show */
} compat_result;

/*
 * Checks each schema file of contracts that is not yet registered under a subject it is known to
 * go to against that subject's latest version (registry_compatible). The subjects known at start
 * (docs/schemas.md, Compatibility at start): by the strategy, for the Avro sources of cfg whose
 * topic template has no placeholder; with RecordNameStrategy every file's record name; and the
 * registry's subjects a template with placeholders may have written: TopicNameStrategy's
 * <topic>-value whose latest schema has the file's record full name, TopicRecordNameStrategy's
 * <topic>-<record full name>. Nothing to do with auto_register off (nothing is registered).
 */
compat_result compat_check(const relay_config *cfg, registry_strategy strategy,
			   const contract_set *contracts, registry *reg, char *err, size_t errlen);

#endif
