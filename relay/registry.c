/* registry.c: a schema registry client (Confluent REST API, libcurl): schema ids by subject and text. */
#include "registry.h"

#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

/* One cached id: the registry answered it for this subject and schema text. */
typedef struct {
	char *subject;
	char *text;
	int id;
} registry_entry;

struct registry {
	char *url;
	char *user;
	char *password;
	char *ca_file;
	char *cert_file;
	char *key_file;
	char *key_password; /* NULL: none; wiped when freed */
	long timeout_ms;
	bool auto_register;
	CURL *curl; /* one handle, reused: keeps the connection alive */
	registry_entry *cache;
	size_t n_cache;
	char *body; /* the last response */
	size_t body_len;
	char curl_err[CURL_ERROR_SIZE]; /* libcurl's detail of the last failure (a TLS alert) */
};

registry *registry_new(const char *url, const char *user, const char *password,
		       const registry_tls *tls, int timeout_ms, bool auto_register)
{
	registry *r = xcalloc(1, sizeof(*r));

	curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl */
	r->url = xstrdup(url);
	while (r->url[0] && r->url[strlen(r->url) - 1] == '/')
		r->url[strlen(r->url) - 1] = '\0';
	r->user = xstrdup(user);
	r->password = xstrdup(password ? password : "");
	r->ca_file = xstrdup(tls->ca_file);
	r->cert_file = xstrdup(tls->cert_file);
	r->key_file = xstrdup(tls->key_file);
	r->key_password = tls->key_password ? xstrdup(tls->key_password) : NULL;
	r->timeout_ms = timeout_ms;
	r->auto_register = auto_register;
	return r;
}

void registry_free(registry *r)
{
	if (!r)
		return;
	if (r->curl)
		curl_easy_cleanup(r->curl);
	for (size_t i = 0; i < r->n_cache; i++) {
		free(r->cache[i].subject);
		free(r->cache[i].text);
	}
	free(r->cache);
	free(r->url);
	free(r->user);
	explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->ca_file);
	free(r->cert_file);
	free(r->key_file);
	if (r->key_password) {
		explicit_bzero(r->key_password, strlen(r->key_password));
		free(r->key_password);
	}
	free(r->body);
	free(r);
	curl_global_cleanup();
}

/* libcurl's write callback: the response body, appended to r->body. */
static size_t on_body(char *data, size_t size, size_t n, void *opaque)
{
	registry *r = opaque;
	size_t len = size * n;

	r->body = xrealloc(r->body, r->body_len + len + 1);
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	r->body[r->body_len] = '\0';
	return len;
}

/* The request's fixed options, set once on the reused handle. */
static void setup_handle(registry *r)
{
	r->curl = curl_easy_init();
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, r->timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS, r->timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM in a daemon */
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->curl_err);
	if (r->user[0]) { /* libcurl copies the strings it is given */
		curl_easy_setopt(r->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(r->curl, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(r->curl, CURLOPT_PASSWORD, r->password);
	}
	if (r->ca_file[0])
		curl_easy_setopt(r->curl, CURLOPT_CAINFO, r->ca_file);
	/*
	 * Mutual TLS: PEM is libcurl's default type for both. libcurl reads the files again at each
	 * new connection; without KEYPASSWD it leaves OpenSSL's default callback, which asks on the
	 * terminal (a key encrypted since the start would block the loop on /dev/tty), so always
	 * set one: "" when there is no credential, and an encrypted key fails like an outage.
	 */
	if (r->cert_file[0]) {
		curl_easy_setopt(r->curl, CURLOPT_SSLCERT, r->cert_file);
		curl_easy_setopt(r->curl, CURLOPT_SSLKEY, r->key_file);
		curl_easy_setopt(r->curl, CURLOPT_KEYPASSWD, r->key_password ? r->key_password : "");
	}
}

/*
 * Runs the request set on the handle; without an answer, err says why with libcurl's detail
 * (which TLS alert, which certificate check), as curl_easy_strerror alone names only the class.
 */
static CURLcode perform(registry *r, char *err, size_t errlen)
{
	CURLcode rc;

	r->curl_err[0] = '\0';
	rc = curl_easy_perform(r->curl);
	if (rc == CURLE_OK)
		return rc;
	if (r->curl_err[0])
		snprintf(err, errlen, "schema registry %s: %s (%s)", r->url, curl_easy_strerror(rc),
			 r->curl_err);
	else
		snprintf(err, errlen, "schema registry %s: %s", r->url, curl_easy_strerror(rc));
	return rc;
}

/* POSTs body to url; the HTTP status, or -1 with err when there was no answer. */
static long post(registry *r, const char *url, const char *body, char *err, size_t errlen)
{
	struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/vnd.schemaregistry.v1+json");
	long status = -1;
	CURLcode rc;

	if (!r->curl)
		setup_handle(r);
	r->body_len = 0;
	curl_easy_setopt(r->curl, CURLOPT_URL, url);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, hdrs); /* ours: freed after the request */
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body); /* not copied: body outlives the call */
	rc = perform(r, err, errlen);
	if (rc == CURLE_OK)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	return status;
}

static void remember(registry *r, const char *subject, const char *text, int id);

/* GETs <url><path>; the HTTP status, or -1 with err when there was no answer. */
static long get(registry *r, const char *path, char *err, size_t errlen)
{
	strbuf url = {0};
	CURLcode rc;
	long status = -1;

	if (!r->curl)
		setup_handle(r);
	r->body_len = 0;
	strbuf_addf(&url, "%s%s", r->url, path);
	curl_easy_setopt(r->curl, CURLOPT_URL, strbuf_str(&url));
	curl_easy_setopt(r->curl, CURLOPT_HTTPGET, 1L); /* the next post() sets POSTFIELDS again */
	rc = perform(r, err, errlen);
	if (rc == CURLE_OK)
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	strbuf_free(&url);
	return status;
}

/* The id of a successful registration's answer ({"id": N}); -1 when it has none. */
static int answer_id(const registry *r)
{
	json_t *o = r->body ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	json_t *id = json_object_get(o, "id");
	int v = json_is_integer(id) ? (int)json_integer_value(id) : -1;

	json_decref(o);
	return v;
}

/* POSTs {"schema": text} to <url><head><subject><tail>; the HTTP status or -1 (err). */
static long post_to(registry *r, const char *head, const char *subject, const char *tail,
		    const char *text, char *err, size_t errlen)
{
	char *esc = curl_easy_escape(NULL, subject, 0); /* libcurl's: curl_free */
	strbuf url = {0};
	json_t *req = json_pack("{s:s}", "schema", text);
	char *body = json_dumps(req, JSON_COMPACT); /* jansson's malloc: free */

	strbuf_addf(&url, "%s%s%s%s", r->url, head, esc, tail);
	long status = post(r, strbuf_str(&url), body, err, errlen);
	free(body);
	json_decref(req);
	strbuf_free(&url);
	curl_free(esc);
	return status;
}

/* POSTs {"schema": text} to <url>/subjects/<subject><tail>; the HTTP status or -1 (err). */
static long post_schema(registry *r, const char *subject, const char *tail, const char *text,
			char *err, size_t errlen)
{
	return post_to(r, "/subjects/", subject, tail, text, err, errlen);
}

/* Whether an HTTP status is a refusal of the schema itself (not an outage, not access). */
static bool is_refusal(long status)
{
	return status >= 400 && status < 500 && status != 401 && status != 403 && status != 404 &&
	       status != 408 && status != 429;
}

/*
 * Registers text under subject (the registry answers an existing one's id too). A 409 is looked
 * up first: Apicurio answers 409 "already exists" to a registration racing an earlier one of
 * the same text (one that timed out on our side and went through later), and only a schema not
 * registered under the subject is refused.
 */
static registry_result register_schema(registry *r, const char *subject, const char *text, int *id,
				       char *err, size_t errlen)
{
	long status = post_schema(r, subject, "/versions", text, err, errlen);

	if (status == 200 && (*id = answer_id(r)) >= 0)
		return REGISTRY_OK;
	if (is_refusal(status)) {
		char *refusal = xstrdup(r->body ? r->body : ""); /* the lookup's answer replaces it */
		bool found = status == 409 && post_schema(r, subject, "", text, err, errlen) == 200 &&
			     (*id = answer_id(r)) >= 0;
		if (!found)
			snprintf(err, errlen, "the schema registry refused the schema of subject %s "
				 "(HTTP %ld): %.300s", subject, status, refusal);
		free(refusal);
		return found ? REGISTRY_OK : REGISTRY_REFUSED;
	}
	if (status >= 0)
		snprintf(err, errlen, "the schema registry answered HTTP %ld for subject %s: %.300s",
			 status, subject, r->body ? r->body : "");
	return REGISTRY_DOWN;
}

/* Looks text up under subject without registering it (auto_register off). */
static registry_result lookup_schema(registry *r, const char *subject, const char *text, int *id,
				     char *err, size_t errlen)
{
	long status = post_schema(r, subject, "", text, err, errlen);

	if (status == 200 && (*id = answer_id(r)) >= 0)
		return REGISTRY_OK;
	if (status == 404) {
		snprintf(err, errlen, "the schema is not registered under subject %s with this text "
			 "(schema_registry.auto_register = false): %.200s", subject, r->body ? r->body : "");
		return REGISTRY_REFUSED;
	}
	if (status >= 0)
		snprintf(err, errlen, "the schema registry answered HTTP %ld for subject %s: %.300s",
			 status, subject, r->body ? r->body : "");
	return REGISTRY_DOWN;
}

registry_result registry_id(registry *r, const char *subject, const char *schema_text, int *id,
			    char *err, size_t errlen)
{
	for (size_t i = 0; i < r->n_cache; i++)
		if (strcmp(r->cache[i].subject, subject) == 0 && strcmp(r->cache[i].text, schema_text) == 0) {
			*id = r->cache[i].id;
			return REGISTRY_OK;
		}
	registry_result res = r->auto_register ? register_schema(r, subject, schema_text, id, err, errlen)
					       : lookup_schema(r, subject, schema_text, id, err, errlen);
	if (res == REGISTRY_OK)
		remember(r, subject, schema_text, *id);
	return res;
}

/* Says why an answer is not what a start-time request needed: DOWN (it may pass) with err. */
static registry_result unexpected(registry *r, long status, const char *what, char *err, size_t errlen)
{
	if (status >= 0)
		snprintf(err, errlen, "the schema registry answered HTTP %ld to %s: %.300s", status, what,
			 r->body ? r->body : "");
	return REGISTRY_DOWN;
}

/*
 * A start-time question the registry answered but will not answer (403 Forbidden: a principal
 * allowed to register under its subjects but not to list them or ask for a compatibility check;
 * 400, 405: a proxy or a registry without the call): REFUSED with err, so the caller does
 * without. 401 and the rest: unexpected.
 */
static registry_result listing_refused(registry *r, long status, const char *what, char *err,
				       size_t errlen)
{
	if (status != 400 && status != 403 && status != 405)
		return unexpected(r, status, what, err, errlen);
	snprintf(err, errlen, "the schema registry answered HTTP %ld to %s: %.200s", status, what,
		 r->body ? r->body : "");
	return REGISTRY_REFUSED;
}

/* Keeps an id the registry answered for (subject, text), as registry_id does. */
static void remember(registry *r, const char *subject, const char *text, int id)
{
	r->cache = xrealloc(r->cache, sizeof(*r->cache) * (r->n_cache + 1));
	r->cache[r->n_cache].subject = xstrdup(subject);
	r->cache[r->n_cache].text = xstrdup(text);
	r->cache[r->n_cache++].id = id;
}

registry_result registry_registered(registry *r, const char *subject, const char *schema_text,
				    bool *registered, char *err, size_t errlen)
{
	long status = post_schema(r, subject, "", schema_text, err, errlen);
	int id;

	*registered = status == 200 && (id = answer_id(r)) >= 0;
	if (*registered) {
		remember(r, subject, schema_text, id);
		return REGISTRY_OK;
	}
	return status == 404 ? REGISTRY_OK : listing_refused(r, status, "a schema lookup", err, errlen);
}

/* The registry's reason for an incompatibility: Confluent's "messages", Apicurio's "reason". */
static void incompatibility_reason(json_t *o, char *reason, size_t len)
{
	json_t *msgs = json_object_get(o, "messages"), *why = json_object_get(o, "reason");
	strbuf b = {0};
	size_t i;
	json_t *m;

	json_array_foreach(msgs, i, m)
		if (json_is_string(m))
			strbuf_addf(&b, "%s%s", b.len ? "; " : "", json_string_value(m));
	if (!b.len && json_is_string(why))
		strbuf_addf(&b, "%s", json_string_value(why));
	snprintf(reason, len, "%.400s", b.len ? strbuf_str(&b) : "no reason given");
	strbuf_free(&b);
}

registry_result registry_compatible(registry *r, const char *subject, const char *schema_text,
				    bool *compatible, char *reason, size_t reasonlen, char *err,
				    size_t errlen)
{
	long status = post_to(r, "/compatibility/subjects/", subject, "/versions/latest?verbose=true",
			      schema_text, err, errlen);

	*compatible = true;
	reason[0] = '\0';
	if (status == 404) /* no such subject, or no version in it: nothing to be compatible with */
		return REGISTRY_OK;
	if (status == 422) {
		*compatible = false;
		snprintf(reason, reasonlen, "the registry finds the schema invalid: %.300s",
			 r->body ? r->body : "");
		return REGISTRY_OK;
	}
	json_t *o = status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	json_t *is = json_object_get(o, "is_compatible");
	if (!json_is_boolean(is)) {
		json_decref(o);
		return listing_refused(r, status, "a compatibility check", err, errlen);
	}
	*compatible = json_is_true(is);
	if (!*compatible)
		incompatibility_reason(o, reason, reasonlen);
	json_decref(o);
	return REGISTRY_OK;
}

registry_result registry_subjects(registry *r, char ***subjects, size_t *n, char *err, size_t errlen)
{
	long status = get(r, "/subjects", err, errlen);
	json_t *a = status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	size_t i;
	json_t *v;

	*subjects = NULL;
	*n = 0;
	if (!json_is_array(a)) {
		json_decref(a);
		return listing_refused(r, status, "the list of subjects", err, errlen);
	}
	*subjects = xcalloc(json_array_size(a) + 1, sizeof(char *));
	json_array_foreach(a, i, v)
		if (json_is_string(v))
			(*subjects)[(*n)++] = xstrdup(json_string_value(v));
	json_decref(a);
	return REGISTRY_OK;
}

/* The full name of a schema's top-level named type (Avro's rules for name and namespace). */
static char *schema_full_name(const char *text)
{
	json_t *s = json_loads(text, 0, NULL);
	const char *name = json_string_value(json_object_get(s, "name"));
	const char *ns = json_string_value(json_object_get(s, "namespace"));
	strbuf b = {0};
	char *out = NULL;

	if (name) {
		if (!strchr(name, '.') && ns && ns[0])
			strbuf_addf(&b, "%s.", ns);
		strbuf_addf(&b, "%s", name);
		out = xstrdup(strbuf_str(&b));
	}
	strbuf_free(&b);
	json_decref(s);
	return out;
}

/* GETs /subjects/{subject}/versions<tail>: the HTTP status (see get()). */
static long get_versions(registry *r, const char *subject, const char *tail, char *err,
			 size_t errlen)
{
	char *esc = curl_easy_escape(NULL, subject, 0);
	strbuf path = {0};

	strbuf_addf(&path, "/subjects/%s/versions%s", esc, tail);
	long status = get(r, strbuf_str(&path), err, errlen);
	strbuf_free(&path);
	curl_free(esc);
	return status;
}

registry_result registry_versions(registry *r, const char *subject, int **versions, size_t *n,
				  char *err, size_t errlen)
{
	long status = get_versions(r, subject, "", err, errlen);
	json_t *a = status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	size_t i;
	json_t *v;

	*versions = NULL;
	*n = 0;
	if (status == 404)
		return REGISTRY_OK;
	if (!json_is_array(a)) {
		json_decref(a);
		return listing_refused(r, status, "the versions of a subject", err, errlen);
	}
	*versions = xcalloc(json_array_size(a) + 1, sizeof(int));
	json_array_foreach(a, i, v)
		if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT_MAX)
			(*versions)[(*n)++] = (int)json_integer_value(v);
	json_decref(a);
	return REGISTRY_OK;
}

registry_result registry_version_schema(registry *r, const char *subject, int version, char **text,
					char *err, size_t errlen)
{
	char tail[32];

	snprintf(tail, sizeof(tail), version ? "/%d" : "/latest", version);
	long status = get_versions(r, subject, tail, err, errlen);
	*text = NULL;
	if (status == 404)
		return REGISTRY_OK;
	json_t *o = status == 200 ? json_loadb(r->body, r->body_len, 0, NULL) : NULL;
	const char *t = json_string_value(json_object_get(o, "schema"));
	const char *type = json_string_value(json_object_get(o, "schemaType")); /* absent: AVRO */
	registry_result rr = REGISTRY_OK;

	if (!t)
		rr = listing_refused(r, status, "a version of a subject", err, errlen);
	else if (type && strcmp(type, "AVRO") != 0) {
		snprintf(err, errlen, "subject %s version %d is a %s schema, not Avro", subject, version,
			 type);
		rr = REGISTRY_REFUSED;
	} else
		*text = xstrdup(t);
	json_decref(o);
	return rr;
}

registry_result registry_latest_name(registry *r, const char *subject, char **full_name, char *err,
				     size_t errlen)
{
	char *text;
	registry_result rr = registry_version_schema(r, subject, 0, &text, err, errlen);

	*full_name = rr == REGISTRY_OK && text ? schema_full_name(text) : NULL;
	free(text);
	return rr;
}

int registry_subject(registry_strategy s, const char *topic, const char *record, char *out, size_t len)
{
	int n;

	if (s != REGISTRY_TOPIC_NAME && !record)
		return -1;
	if (s == REGISTRY_TOPIC_NAME)
		n = snprintf(out, len, "%s-value", topic);
	else if (s == REGISTRY_RECORD_NAME)
		n = snprintf(out, len, "%s", record);
	else
		n = snprintf(out, len, "%s-%s", topic, record);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int registry_key_subject(registry_strategy s, const char *topic, const char *type, char *out,
			 size_t len)
{
	int n = s == REGISTRY_TOPIC_NAME ? snprintf(out, len, "%s-key", topic)
					 : registry_subject(s, topic, type, out, len);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

void registry_wire_header(char *out, int id)
{
	out[0] = 0;
	out[1] = (char)((unsigned)id >> 24);
	out[2] = (char)((unsigned)id >> 16);
	out[3] = (char)((unsigned)id >> 8);
	out[4] = (char)id;
}
