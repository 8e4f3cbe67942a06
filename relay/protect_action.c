/* protect_action.c: what field protection does to one clear value: mask, keyed hash, encryption. */
#include "protect_action.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define NONCE_BYTES 12
#define TAG_BYTES 16

int protect_kind_of(const char *word)
{
	static const char *const words[] = {"drop", "mask", "hash", "encrypt"};

	for (int i = 0; i < 4; i++)
		if (strcmp(words[i], word) == 0)
			return i;
	return -1;
}

/* One hex digit's value, or -1. */
static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int protect_key_parse(const char *text, unsigned char key[PROTECT_KEY_BYTES], char *why,
		      size_t whylen)
{
	size_t n = strlen(text);

	while (n > 0 && isspace((unsigned char)text[n - 1]))
		n--;
	for (size_t i = 0; i < n; i++)
		if (hex_value(text[i]) < 0) {
			snprintf(why, whylen, "is not hex digits (character %zu)", i + 1);
			return -1;
		}
	if (n != 2 * PROTECT_KEY_BYTES) {
		snprintf(why, whylen, "is %zu hex digits; it must be %d (%d bytes: openssl rand -hex %d)",
			 n, 2 * PROTECT_KEY_BYTES, PROTECT_KEY_BYTES, PROTECT_KEY_BYTES);
		return -1;
	}
	for (size_t i = 0; i < PROTECT_KEY_BYTES; i++)
		key[i] = (unsigned char)(hex_value(text[2 * i]) << 4 | hex_value(text[2 * i + 1]));
	return 0;
}

/* Masking counts characters, not bytes: a UTF-8 continuation byte starts none. */
static bool starts_char(unsigned char c) { return (c & 0xC0) != 0x80; }

void protect_mask(strbuf *out, const char *s, size_t n, int keep_last)
{
	size_t chars = 0, seen = 0, masked, i;

	for (i = 0; i < n; i++)
		chars += starts_char((unsigned char)s[i]);
	masked = chars > (size_t)keep_last ? chars - (size_t)keep_last : 0;
	for (i = 0; i < n; i++) {
		if (!starts_char((unsigned char)s[i]))
			continue; /* a masked character's other bytes go with it */
		if (seen++ == masked)
			break;
		strbuf_addc(out, '*');
	}
	strbuf_addn(out, s + i, n - i);
}

void protect_hash(strbuf *out, const unsigned char key[PROTECT_KEY_BYTES], const char *s, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;
	char *p;

	HMAC(EVP_sha256(), key, PROTECT_KEY_BYTES, (const unsigned char *)s, n, md, &len);
	p = strbuf_room(out, 2 * (size_t)len);
	for (unsigned int i = 0; i < len; i++) {
		p[2 * i] = digits[md[i] >> 4];
		p[2 * i + 1] = digits[md[i] & 15];
	}
	strbuf_setlen(out, out->len + 2 * (size_t)len);
}

/* AES-256-GCM of s under key and nonce into ct (n bytes) and tag: 0 or -1. */
static int gcm_seal(const unsigned char *key, const unsigned char *nonce, const char *s, size_t n,
		    unsigned char *ct, unsigned char *tag)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len = 0, ok;

	ok = c && n <= (size_t)0x7fffffff &&
	     EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1 &&
	     EVP_EncryptUpdate(c, ct, &len, (const unsigned char *)s, (int)n) == 1 &&
	     EVP_EncryptFinal_ex(c, ct + len, &len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

int protect_encrypt(strbuf *out, const unsigned char key[PROTECT_KEY_BYTES], const char *key_id,
		    const char *s, size_t n)
{
	size_t raw_len = NONCE_BYTES + n + TAG_BYTES;
	strbuf raw = {0};
	unsigned char *r = (unsigned char *)strbuf_room(&raw, raw_len);
	int rc = -1;

	if (RAND_bytes(r, NONCE_BYTES) == 1 &&
	    gcm_seal(key, r, s, n, r + NONCE_BYTES, r + NONCE_BYTES + n) == 0) {
		strbuf_addf(out, "enc:v1:%s:", key_id);
		char *b64 = strbuf_room(out, 4 * ((raw_len + 2) / 3));
		int b = EVP_EncodeBlock((unsigned char *)b64, r, (int)raw_len);
		strbuf_setlen(out, out->len + (size_t)b);
		rc = 0;
	}
	strbuf_free(&raw);
	return rc;
}

/* AES-256-GCM open of raw (nonce | ct | tag) under key, appending the clear text: 0 or -1. */
static int gcm_open(strbuf *out, const unsigned char *key, const unsigned char *raw, size_t n)
{
	size_t ct_len = n - NONCE_BYTES - TAG_BYTES;
	unsigned char *p = (unsigned char *)strbuf_room(out, ct_len + 16);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len = 0, fin = 0, ok;

	ok = c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, raw) == 1 &&
	     EVP_DecryptUpdate(c, p, &len, raw + NONCE_BYTES, (int)ct_len) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
				 (void *)(raw + NONCE_BYTES + ct_len)) == 1 &&
	     EVP_DecryptFinal_ex(c, p + len, &fin) == 1;
	EVP_CIPHER_CTX_free(c);
	if (ok)
		strbuf_setlen(out, out->len + (size_t)len + (size_t)fin);
	return ok ? 0 : -1;
}

int protect_decrypt(strbuf *out, const unsigned char key[PROTECT_KEY_BYTES], const char *text,
		    size_t n)
{
	const char *colon;
	strbuf raw = {0};
	size_t b64_len;
	int len, rc = -1;

	if (n < 7 || memcmp(text, "enc:v1:", 7) != 0 ||
	    !(colon = memchr(text + 7, ':', n - 7)))
		return -1;
	b64_len = n - (size_t)(colon + 1 - text);
	if (b64_len % 4 != 0 || b64_len > 0x7ffffff0)
		return -1;
	unsigned char *r = (unsigned char *)strbuf_room(&raw, b64_len);
	len = EVP_DecodeBlock(r, (const unsigned char *)colon + 1, (int)b64_len);
	/* EVP_DecodeBlock counts the padding as zero bytes: take them off. */
	for (size_t k = b64_len; len > 0 && k > 0 && colon[k] == '='; k--)
		len--;
	if (len >= NONCE_BYTES + TAG_BYTES)
		rc = gcm_open(out, key, r, (size_t)len);
	strbuf_free(&raw);
	return rc;
}
