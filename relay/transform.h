/* transform.h: the transform stage: changes a built record's fields before it is encoded. */
#ifndef RELAY_TRANSFORM_H
#define RELAY_TRANSFORM_H

#include <stddef.h>

#include "config.h"
#include "record.h"
#include "strbuf.h"

/* The stage's state for one configuration: the compiled protect rules and their keys. */
typedef struct transform transform;

/*
 * Compiles cfg's protect rules (docs/privacy.md) and reads the keys they need from the systemd
 * credentials protect-hash-key and protect-encrypt-key (64 hex digits each). NULL with one line
 * in err ("FILE:LINE: protect[0] ...") when a key is missing or not 32 bytes: the relay does
 * not start. cfg must outlive the stage.
 */
transform *transform_new(const relay_config *cfg, char *err, size_t errlen);
/*
 * Seals text that must not be stored in clear (a snapshot's position: key values) with the
 * encryption key: appends "enc:v1:..." to out. -1 without the key or when OpenSSL fails.
 */
int transform_seal(transform *t, const char *text, size_t n, strbuf *out);
/* Appends the clear text of a sealed value to out: -1 without the key or when it does not open. */
int transform_unseal(transform *t, const char *text, size_t n, strbuf *out);
/* True when the encryption key was read (protect-encrypt-key): transform_seal works. */
bool transform_can_seal(const transform *t);
/* True when the hash key was read (protect-hash-key): protected key columns need it. */
bool transform_can_hash(const transform *t);
/* Frees what transform_new made (NULL: nothing); the keys are wiped. */
void transform_free(transform *t);

/*
 * Applies the protect rules to the record: an outbox record's value (its payload) by the
 * fields of the rules whose event_types take its event_type header; a captured change or
 * snapshot row's value (after, before) and key by the columns of the rules whose tables take
 * its source. The new key and value are the stage's own buffers until its next call. 0, or -1
 * with *why when the record must not be published as it is (a value that is not JSON where a
 * rule applies; encryption failing): its row is dead-lettered, protected (below).
 */
int transform_apply(transform *t, record *rec, const char **why);

/*
 * Protects a dead letter m (route.c's router_dead_letter: the raw row as value) of source:
 * when any field rule exists or a column rule's tables take source, the raw row goes out
 * encrypted as one value (with an encryption key) or not at all (value null), with header
 * dlq_protected "encrypted" or "withheld"; a key the stage did not already protect gets the
 * column rules. The new headers and key are the stage's own until its next call.
 */
void transform_dead_letter(transform *t, const char *source, route_msg *m);

#endif
