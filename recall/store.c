#include "recall/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/pool.h"

struct store {
	const struct store_backend *be;
	void *impl;
	struct pool *pool;
	unsigned rejected; /* bad-key failures still waiting for their callback */
	char desc[600];
};

int store_key_valid(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > 512 || key[0] == '/' || key[n - 1] == '/')
		return 0;
	for (const char *c = key; *c; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '/' || *c == '.' || *c == '_' || *c == '-'))
			return 0;
	}
	/* No empty, "." or ".." components: file:// maps keys onto directories. */
	for (const char *c = key; c;) {
		const char *end = strchr(c, '/');
		size_t len = end ? (size_t)(end - c) : strlen(c);

		/* Dot-names are the backends' own (file:// keeps .tmp/ in its root). */
		if (len == 0 || c[0] == '.')
			return 0;
		c = end ? end + 1 : NULL;
	}
	return 1;
}

struct store *store_open(struct ev_loop *loop, struct pool *pool, const struct hsm_store_cfg *cfg,
			 char *err, size_t errlen)
{
	const struct store_backend *be;
	struct store *s;

	switch (cfg->kind) {
	case HSM_STORE_FILE:
		be = &store_backend_file;
		break;
	case HSM_STORE_S3:
		be = &store_backend_s3;
		break;
	default:
		snprintf(err, errlen, "unknown object store kind %d", cfg->kind);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->be = be;
	s->pool = pool;
	snprintf(s->desc, sizeof(s->desc), "%s", cfg->url ? cfg->url : be->scheme);
	s->impl = be->open(loop, pool, cfg, err, errlen);
	if (!s->impl) {
		free(s);
		return NULL;
	}
	return s;
}

/* A request with a bad key must still be answered on the loop thread, later, like
 * any other: an empty pool job carries it there. */
struct store_reject {
	struct store *s;
	int kind; /* 0 get, 1 done, 2 head, 3 list */
	void (*cb)(void);
	void *arg;
	char msg[600];
};

static void store_reject_work(void *arg)
{
	(void)arg;
}

static void store_reject_done(void *argp)
{
	struct store_reject *r = argp;

	r->s->rejected--;
	switch (r->kind) {
	case 0:
		((store_get_cb)r->cb)(r->arg, EINVAL, r->msg, NULL, 0);
		break;
	case 1:
		((store_done_cb)r->cb)(r->arg, EINVAL, r->msg);
		break;
	case 2:
		((store_head_cb)r->cb)(r->arg, EINVAL, r->msg, 0, 0);
		break;
	default:
		((store_list_cb)r->cb)(r->arg, EINVAL, r->msg, NULL, 0);
		break;
	}
	free(r);
}

static int store_reject_bad_key(struct store *s, const char *key, int kind, void (*cb)(void),
				void *arg)
{
	struct store_reject *r;

	if (store_key_valid(key))
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r)
		abort();
	r->s = s;
	r->kind = kind;
	r->cb = cb;
	r->arg = arg;
	snprintf(r->msg, sizeof(r->msg), "invalid object key '%.512s'", key);
	s->rejected++;
	pool_submit(s->pool, store_reject_work, store_reject_done, r);
	return 1;
}

void store_get(struct store *s, const char *key, uint64_t off, uint64_t len, store_get_cb cb,
	       void *arg)
{
	if (!store_reject_bad_key(s, key, 0, (void (*)(void))cb, arg))
		s->be->get(s->impl, key, off, len, cb, arg);
}

void store_put(struct store *s, const char *key, const void *data, size_t len, store_done_cb cb,
	       void *arg)
{
	if (!store_reject_bad_key(s, key, 1, (void (*)(void))cb, arg))
		s->be->put(s->impl, key, data, len, cb, arg);
}

void store_head(struct store *s, const char *key, store_head_cb cb, void *arg)
{
	if (!store_reject_bad_key(s, key, 2, (void (*)(void))cb, arg))
		s->be->head(s->impl, key, cb, arg);
}

void store_delete(struct store *s, const char *key, store_done_cb cb, void *arg)
{
	if (!store_reject_bad_key(s, key, 1, (void (*)(void))cb, arg))
		s->be->del(s->impl, key, cb, arg);
}

void store_list(struct store *s, const char *prefix, store_list_cb cb, void *arg)
{
	char check[520];
	size_t n = strlen(prefix);

	/* "" lists everything; otherwise the prefix, less one trailing '/', must look
	 * like a key. */
	if (n >= sizeof(check))
		n = sizeof(check) - 1;
	memcpy(check, prefix, n);
	check[n] = '\0';
	if (n && check[n - 1] == '/')
		check[n - 1] = '\0';
	if (*prefix && store_reject_bad_key(s, check, 3, (void (*)(void))cb, arg))
		return;
	s->be->list(s->impl, prefix, cb, arg);
}

unsigned store_pending(const struct store *s)
{
	return s->be->pending(s->impl) + s->rejected;
}

const char *store_describe(const struct store *s)
{
	return s->desc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	s->be->close(s->impl);
	free(s);
}
