/* registry.h: a schema registry client (Confluent REST API, libcurl): schema ids by subject and text. */
#ifndef RELAY_REGISTRY_H
#define RELAY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct registry registry;

/* What a registration came to. */
typedef enum {
	REGISTRY_OK,      /* *id is the schema's id */
	REGISTRY_DOWN,    /* no answer, a timeout, 5xx or an auth failure: may pass, try again */
	REGISTRY_REFUSED, /* the registry refused the schema (incompatible: 409, invalid: 422) */
} registry_result;

/*
 * A client of the registry at url (the API's base, e.g. http://h:p/apis/ccompat/v7). user ""
 * means no basic auth; password may be NULL; ca_file "" means the system's CAs. Each request
 * waits at most timeout_ms. auto_register false: schemas are only looked up, never registered.
 * The strings are copied.
 */
registry *registry_new(const char *url, const char *user, const char *password,
		       const char *ca_file, int timeout_ms, bool auto_register);
void registry_free(registry *r);
/*
 * The id of schema_text under subject, registering it when new (POST
 * /subjects/{subject}/versions), or with auto_register off looking it up (POST
 * /subjects/{subject}; not there: REFUSED). Ids are cached per (subject, text): the registry is
 * asked once per pair in a process. On DOWN or REFUSED err says why.
 */
registry_result registry_id(registry *r, const char *subject, const char *schema_text, int *id,
			    char *err, size_t errlen);

#endif
