/* registry.c: a schema registry client (Confluent REST API, libcurl): schema ids by subject and text. */
#include "registry.h"

#include <curl/curl.h>
#include <jansson.h>
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
	long timeout_ms;
	bool auto_register;
	CURL *curl; /* one handle, reused: keeps the connection alive */
	registry_entry *cache;
	size_t n_cache;
	char *body; /* the last response */
	size_t body_len;
};

registry *registry_new(const char *url, const char *user, const char *password,
		       const char *ca_file, int timeout_ms, bool auto_register)
{
	registry *r = xcalloc(1, sizeof(*r));

	curl_global_init(CURL_GLOBAL_DEFAULT); /* reference-counted by libcurl */
	r->url = xstrdup(url);
	while (r->url[0] && r->url[strlen(r->url) - 1] == '/')
		r->url[strlen(r->url) - 1] = '\0';
	r->user = xstrdup(user);
	r->password = xstrdup(password ? password : "");
	r->ca_file = xstrdup(ca_file);
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
	free(r->password);
	free(r->ca_file);
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
	if (r->user[0]) { /* libcurl copies the strings it is given */
		curl_easy_setopt(r->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(r->curl, CURLOPT_USERNAME, r->user);
		curl_easy_setopt(r->curl, CURLOPT_PASSWORD, r->password);
	}
	if (r->ca_file[0])
		curl_easy_setopt(r->curl, CURLOPT_CAINFO, r->ca_file);
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
	rc = curl_easy_perform(r->curl);
	if (rc != CURLE_OK)
		snprintf(err, errlen, "schema registry %s: %s", r->url, curl_easy_strerror(rc));
	else
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
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

/* POSTs {"schema": text} to <url>/subjects/<subject><tail>; the HTTP status or -1 (err). */
static long post_schema(registry *r, const char *subject, const char *tail, const char *text,
			char *err, size_t errlen)
{
	char *esc = curl_easy_escape(NULL, subject, 0); /* libcurl's: curl_free */
	strbuf url = {0};
	json_t *req = json_pack("{s:s}", "schema", text);
	char *body = json_dumps(req, JSON_COMPACT); /* jansson's malloc: free */

	strbuf_addf(&url, "%s/subjects/%s%s", r->url, esc, tail);
	long status = post(r, strbuf_str(&url), body, err, errlen);
	free(body);
	json_decref(req);
	strbuf_free(&url);
	curl_free(esc);
	return status;
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
	if (res != REGISTRY_OK)
		return res;
	r->cache = xrealloc(r->cache, sizeof(*r->cache) * (r->n_cache + 1));
	r->cache[r->n_cache].subject = xstrdup(subject);
	r->cache[r->n_cache].text = xstrdup(schema_text);
	r->cache[r->n_cache++].id = *id;
	return REGISTRY_OK;
}
