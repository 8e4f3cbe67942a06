/* template.h: topic templates ("cdc.${schema}.${table}"): one parser, validator and expander for outbox sources and captured tables. */
#ifndef RELAY_TEMPLATE_H
#define RELAY_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

/* Kafka accepts topic names of 1 to this many characters from [a-zA-Z0-9._-]. */
#define TEMPLATE_TOPIC_MAX 249

/* A piece of a template: literal text, or the name of a ${placeholder}. */
typedef struct {
	bool is_field;
	char *text; /* NUL-terminated */
	size_t len;
} template_seg;

/* A parsed template; all zeros is an empty one (template_free leaves it so). */
typedef struct {
	template_seg *segs;
	size_t n_segs;
	size_t n_fields;    /* placeholders */
	size_t literal_len; /* bytes of literal text */
} topic_template;

/*
 * The placeholders a kind of template accepts: the names listed (NULL-terminated) and, with
 * any_name, any other name too (an outbox column or a member of a message envelope, which only
 * the rows know). kind names the template in messages ("capture topic").
 */
typedef struct {
	const char *kind;
	const char *const *names;
	bool any_name;
} template_vars;

/* capture[].topic: ${prefix} (relay.topic_prefix), ${schema}, ${table}; nothing else. */
extern const template_vars template_capture_vars;
/* sources[].topic: ${schema}, ${table}, ${prefix} and any ${column} or envelope member. */
extern const template_vars template_outbox_vars;

/*
 * Parses text into t. -1 with a message in err (t then holds nothing) when: the template is
 * empty; a '${' has no closing '}'; a placeholder is empty ("${}") or its name holds '$' or
 * '{'; vars does not accept a name; the literal text holds a character Kafka topic names cannot
 * have or is longer than TEMPLATE_TOPIC_MAX; or, without placeholders, the text is not a valid
 * topic name ("." or ".."). Every message starts "topic template '<text>'".
 */
int template_compile(topic_template *t, const char *text, const template_vars *vars, char *err,
		     size_t errlen);
/* The same checks without keeping the result (for configuration checks). */
int template_check(const char *text, const template_vars *vars, char *err, size_t errlen);
void template_free(topic_template *t);

/*
 * The value of placeholder name: 0 with *text and *len set (*text NULL: null or missing), or
 * -1 with *why set to a static reason.
 */
typedef int (*template_value_fn)(void *ctx, const char *name, const char **text, size_t *len,
				 const char **why);

/*
 * Expands t into out (TEMPLATE_TOPIC_MAX + 1 bytes), NUL-terminated; returns the name's length,
 * or -1 with *why (a static reason) when a value is missing or refused by value(), or the name
 * is not a valid Kafka topic name. On -1, out holds as much of the name as fit.
 */
int template_expand(const topic_template *t, template_value_fn value, void *ctx, char *out,
		    const char **why);

/*
 * Whether some values of the placeholders could expand t to name (each placeholder standing for
 * any text): the literal parts are in name, in order. For finding the topics a template may have
 * written to (the registry's subjects at start).
 */
bool template_may_expand_to(const topic_template *t, const char *name, size_t len);

/* A whole topic name: 1 to 249 characters from [a-zA-Z0-9._-], and neither "." nor "..". */
bool template_topic_name_ok(const char *name, size_t len);

#endif
