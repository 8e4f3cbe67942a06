/* registry.h: a schema registry client (Confluent REST API, libcurl): schema ids by subject and text. */
#ifndef RELAY_REGISTRY_H
#define RELAY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct registry registry;

/* The longest subject name the relay makes, with its NUL (a longer one is an error). */
#define REGISTRY_SUBJECT_MAX 600

/* Confluent's wire format: magic byte 0, then the schema id, 4 bytes big-endian, then Avro. */
#define REGISTRY_WIRE_HEADER 5

/* Writes the wire format's header for schema id into out[0..REGISTRY_WIRE_HEADER). */
void registry_wire_header(char *out, int id);

/* How a record's value subject is named (Confluent's serializers' value.subject.name.strategy). */
typedef enum {
	REGISTRY_TOPIC_NAME,        /* <topic>-value (TopicNameStrategy, the default) */
	REGISTRY_RECORD_NAME,       /* <record full name> (RecordNameStrategy) */
	REGISTRY_TOPIC_RECORD_NAME, /* <topic>-<record full name> (TopicRecordNameStrategy) */
} registry_strategy;

/*
 * The subject of a value of the schema named record (its full name; NULL for an unnamed schema,
 * which only TopicNameStrategy can place) published to topic, written to out. -1 when it does
 * not fit in len or the strategy needs a name the schema does not have.
 */
int registry_subject(registry_strategy s, const char *topic, const char *record, char *out, size_t len);
/* The same for a record's key: <topic>-key, or with the record strategies the key schema's name
 * as Confluent gives a primitive one (its type, e.g. "string"). */
int registry_key_subject(registry_strategy s, const char *topic, const char *type, char *out,
			 size_t len);

/* What a registration came to. */
typedef enum {
	REGISTRY_OK,      /* *id is the schema's id */
	REGISTRY_DOWN,    /* no answer, a timeout, 5xx or an auth failure: may pass, try again */
	REGISTRY_REFUSED, /* the registry refused the schema (incompatible: 409, invalid: 422) */
} registry_result;

/* How the client speaks TLS to an https registry; "" strings mean "not set". */
typedef struct {
	const char *ca_file;      /* CA certificates (PEM); "": the system's */
	const char *cert_file;    /* client certificate (PEM, may hold the chain); "": none */
	const char *key_file;     /* its private key (PEM); set exactly when cert_file is */
	const char *key_password; /* the key's passphrase, or NULL */
} registry_tls;

/*
 * A client of the registry at url (the API's base, e.g. http://h:p/apis/ccompat/v7). user ""
 * means no basic auth; password may be NULL; tls says which CAs to trust and which client
 * certificate to show (mutual TLS). Each request waits at most timeout_ms. auto_register
 * false: schemas are only looked up, never registered. The strings are copied.
 */
registry *registry_new(const char *url, const char *user, const char *password,
		       const registry_tls *tls, int timeout_ms, bool auto_register);
void registry_free(registry *r);
/*
 * The id of schema_text under subject, registering it when new (POST
 * /subjects/{subject}/versions), or with auto_register off looking it up (POST
 * /subjects/{subject}; not there: REFUSED). Ids are cached per (subject, text): the registry is
 * asked once per pair in a process. On DOWN or REFUSED err says why.
 */
registry_result registry_id(registry *r, const char *subject, const char *schema_text, int *id,
			    char *err, size_t errlen);

/*
 * Start-time questions (docs/schemas.md, Compatibility at start). Each returns REGISTRY_OK with
 * the answer, REGISTRY_REFUSED with err when the registry answers but will not tell (HTTP 400,
 * 403, 405: the caller does without the answer), or REGISTRY_DOWN with err (no answer, or one
 * that is not what the API gives).
 */
/* Whether schema_text is registered under subject with exactly this text (then its id is cached). */
registry_result registry_registered(registry *r, const char *subject, const char *schema_text,
				    bool *registered, char *err, size_t errlen);
/*
 * Whether schema_text may be registered under subject by its compatibility rules (POST
 * /compatibility/subjects/{subject}/versions/latest?verbose=true); a subject without versions
 * takes anything. When not: the registry's reason in reason (422, an invalid schema, too).
 */
registry_result registry_compatible(registry *r, const char *subject, const char *schema_text,
				    bool *compatible, char *reason, size_t reasonlen, char *err,
				    size_t errlen);
/* Every subject (GET /subjects): *subjects holds *n malloc'd names in a malloc'd array. */
registry_result registry_subjects(registry *r, char ***subjects, size_t *n, char *err, size_t errlen);
/* The versions of subject, ascending (GET /subjects/{subject}/versions); a subject the registry
 * does not know has none. *versions is malloc'd. */
registry_result registry_versions(registry *r, const char *subject, int **versions, size_t *n,
				  char *err, size_t errlen);
/*
 * The schema text of subject at version (GET /subjects/{subject}/versions/{version}; version 0:
 * the latest); *text NULL when there is no such version. The caller frees *text.
 */
registry_result registry_version_schema(registry *r, const char *subject, int version, char **text,
					char *err, size_t errlen);
/*
 * The full name (namespace.name) of the named type at the top of subject's latest schema;
 * *full_name NULL when the subject has none (or no versions). The caller frees it.
 */
registry_result registry_latest_name(registry *r, const char *subject, char **full_name, char *err,
				     size_t errlen);

#endif
