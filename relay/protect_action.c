/* protect_action.c: what field protection does to one clear value: mask, keyed hash, encryption. */
#include "protect_action.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <nettle/hmac.h>
#include <nettle/sha2.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE_BYTES 12
#define TAG_BYTES 16
/* Nonces drawn from the CSPRNG per call of RAND_bytes (each call costs about a microsecond). */
#define NONCE_BATCH 256

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
	/* A value no longer than keep_last would be kept whole: it is masked whole instead. */
	masked = chars > (size_t)keep_last ? chars - (size_t)keep_last : chars;
	/* i: where the kept characters start (a masked character's other bytes go with it). */
	for (i = 0; i < n; i++)
		if (starts_char((unsigned char)s[i]) && seen++ == masked)
			break;
	memset(strbuf_room(out, masked), '*', masked);
	strbuf_setlen(out, out->len + masked);
	strbuf_addn(out, s + i, n - i);
}

struct protect_crypto {
	/*
	 * Nettle's HMAC: keyed once, and its digest call starts the next value from the keyed
	 * state by a copy in place. OpenSSL 3.0's EVP_MAC spends twice the hash's own time per
	 * short value on set-up (a malloc, a free and a cleanse per digest-state copy, parameter
	 * lookups): docs/performance.md, "Field protection: the keyed hash".
	 */
	struct hmac_sha256_ctx hmac;
	EVP_CIPHER *aes;
	EVP_CIPHER_CTX *gcm; /* keyed with the encryption key; a new nonce per value */
	unsigned char nonces[NONCE_BYTES * NONCE_BATCH]; /* random, drawn a batch at a time */
	size_t nonces_left;
	unsigned char enc_key[PROTECT_KEY_BYTES]; /* for protect_crypto_decrypt; wiped with c */
	bool has_enc;
};

/*
 * Overwrites the stack below the caller's frame: Nettle's keying builds the key XOR its pads in
 * a stack buffer it does not clear (OpenSSL's did), and either pad gives back the key.
 */
__attribute__((noinline)) static void wipe_stack_below(void)
{
	unsigned char below[4096];

	explicit_bzero(below, sizeof(below));
}

/* The HMAC-SHA-256 context, keyed once (Nettle's keying cannot fail). */
static void hmac_setup(protect_crypto *c, const unsigned char *key)
{
	hmac_sha256_set_key(&c->hmac, PROTECT_KEY_BYTES, key);
	wipe_stack_below();
}

/* The AES-256-GCM context, keyed once. */
static int gcm_setup(protect_crypto *c, const unsigned char *key)
{
	return (c->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL)) &&
			       (c->gcm = EVP_CIPHER_CTX_new()) &&
			       EVP_EncryptInit_ex2(c->gcm, c->aes, key, NULL, NULL) == 1
		       ? 0
		       : -1;
}

protect_crypto *protect_crypto_new(const unsigned char *hash_key, const unsigned char *enc_key)
{
	/* OpenSSL's allocator: protect_crypto_free wipes the whole context, the keyed states in it. */
	protect_crypto *c = OPENSSL_zalloc(sizeof(*c));

	if (c && hash_key)
		hmac_setup(c, hash_key);
	if (c && (!enc_key || gcm_setup(c, enc_key) == 0)) {
		if (enc_key) {
			memcpy(c->enc_key, enc_key, PROTECT_KEY_BYTES);
			c->has_enc = true;
		}
		return c;
	}
	protect_crypto_free(c);
	return NULL;
}

void protect_crypto_free(protect_crypto *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->gcm);
	EVP_CIPHER_free(c->aes);
	OPENSSL_clear_free(c, sizeof(*c));
}

/* The two lowercase hex digits of each byte value, for writing a digest a byte at a time. */
#define HEX_ROW(h)                                                                                 \
	h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d" h "e" h "f"
static const char hex_pairs[] = HEX_ROW("0") HEX_ROW("1") HEX_ROW("2") HEX_ROW("3") HEX_ROW("4")
	HEX_ROW("5") HEX_ROW("6") HEX_ROW("7") HEX_ROW("8") HEX_ROW("9") HEX_ROW("a") HEX_ROW("b")
	HEX_ROW("c") HEX_ROW("d") HEX_ROW("e") HEX_ROW("f");

void protect_hash(protect_crypto *c, strbuf *out, const char *s, size_t n)
{
	unsigned char md[SHA256_DIGEST_SIZE];
	char *p;

	/* The digest leaves the context keyed for the next value (nettle/hmac.h). */
	hmac_sha256_update(&c->hmac, n, (const uint8_t *)s);
	hmac_sha256_digest(&c->hmac, sizeof(md), md);
	p = strbuf_room(out, 2 * sizeof(md));
	for (size_t i = 0; i < sizeof(md); i++)
		memcpy(p + 2 * i, hex_pairs + 2 * md[i], 2);
	strbuf_setlen(out, out->len + 2 * sizeof(md));
}

/* AES-256-GCM of s under the keyed context and nonce into ct (n bytes) and tag: 0 or -1. */
static int gcm_seal(EVP_CIPHER_CTX *g, const unsigned char *nonce, const char *s, size_t n,
		    unsigned char *ct, unsigned char *tag)
{
	int len = 0;

	return n <= (size_t)0x7fffffff && EVP_EncryptInit_ex2(g, NULL, NULL, nonce, NULL) == 1 &&
			       EVP_EncryptUpdate(g, ct, &len, (const unsigned char *)s, (int)n) == 1 &&
			       EVP_EncryptFinal_ex(g, ct + len, &len) == 1 &&
			       EVP_CIPHER_CTX_ctrl(g, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1
		       ? 0
		       : -1;
}

/* Copies the next unused random nonce to out (each is used once, then wiped): 0 or -1. */
static int next_nonce(protect_crypto *c, unsigned char *out)
{
	if (c->nonces_left == 0) {
		if (RAND_bytes(c->nonces, sizeof(c->nonces)) != 1)
			return -1;
		c->nonces_left = NONCE_BATCH;
	}
	unsigned char *n = c->nonces + NONCE_BYTES * --c->nonces_left;
	memcpy(out, n, NONCE_BYTES);
	memset(n, 0, NONCE_BYTES);
	return 0;
}

int protect_encrypt(protect_crypto *c, strbuf *out, const char *key_id, const char *s, size_t n)
{
	size_t raw_len = NONCE_BYTES + n + TAG_BYTES, start = out->len;
	int rc = -1;

	if (!c->gcm)
		return -1;
	/* The raw bytes go at the end of out, then their base64 after them, moved into place. */
	STRBUF_ADD_LIT(out, "enc:v1:");
	strbuf_add(out, key_id);
	strbuf_addc(out, ':');
	size_t prefix = out->len, b64_len = 4 * ((raw_len + 2) / 3);
	unsigned char *r = (unsigned char *)strbuf_room(out, raw_len + b64_len + 1);
	if (next_nonce(c, r) == 0 &&
	    gcm_seal(c->gcm, r, s, n, r + NONCE_BYTES, r + NONCE_BYTES + n) == 0) {
		char *b64 = (char *)r + raw_len;
		int b = EVP_EncodeBlock((unsigned char *)b64, r, (int)raw_len);
		memmove(out->s + prefix, b64, (size_t)b);
		strbuf_setlen(out, prefix + (size_t)b);
		rc = 0;
	} else {
		strbuf_setlen(out, start);
	}
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

int protect_crypto_decrypt(protect_crypto *c, strbuf *out, const char *text, size_t n)
{
	return c->has_enc ? protect_decrypt(out, c->enc_key, text, n) : -1;
}
