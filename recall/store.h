/* The object store: an asynchronous key/value interface over file:// and s3://.
 * All calls are made on the loop thread and every callback runs on the loop thread,
 * exactly once, never from inside the call that started it. Keys are relative
 * ("chunks/<sha256>", "manifests/<id>"), [A-Za-z0-9/._-] only, no component that is
 * empty or starts with '.', <= 512 bytes;
 * a bad key fails with EINVAL through the callback.
 *
 * Errors are reported as a positive errno-style code plus a message naming the
 * object and the cause: ENOENT (no such object), EIO (transfer or server error after
 * retries), EACCES (credentials refused), ETIMEDOUT, EINVAL. */
#ifndef HSM_STORE_H
#define HSM_STORE_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct pool;
struct hsm_store_cfg;
struct store;

/* data: malloc'd bytes, ownership passes to the callback (free it); NULL on error. */
typedef void (*store_get_cb)(void *arg, int err, const char *msg, uint8_t *data, size_t len);
typedef void (*store_done_cb)(void *arg, int err, const char *msg);
/* exists is 1 or 0 when err == 0. */
typedef void (*store_head_cb)(void *arg, int err, const char *msg, int exists, uint64_t size);
/* keys: array of n malloc'd strings, owned by the callback (free each and the array). */
typedef void (*store_list_cb)(void *arg, int err, const char *msg, char **keys, size_t n);

/* Opens the store described by cfg. file:// does its disk I/O on pool; s3:// runs
 * libcurl on loop. Returns NULL with a message in err. */
struct store *store_open(struct ev_loop *loop, struct pool *pool, const struct hsm_store_cfg *cfg,
			 char *err, size_t errlen);
/* Reads len bytes at off (len 0 = to the end). A short object yields fewer bytes. */
void store_get(struct store *s, const char *key, uint64_t off, uint64_t len, store_get_cb cb,
	       void *arg);
/* Writes an object atomically (readers see all of it or none). data must stay valid
 * until cb runs. Large objects go up in parts (s3 multipart) above the threshold. */
void store_put(struct store *s, const char *key, const void *data, size_t len, store_done_cb cb,
	       void *arg);
void store_head(struct store *s, const char *key, store_head_cb cb, void *arg);
void store_delete(struct store *s, const char *key, store_done_cb cb, void *arg);
void store_list(struct store *s, const char *prefix, store_list_cb cb, void *arg);
/* Requests in flight or queued. */
unsigned store_pending(const struct store *s);
const char *store_describe(const struct store *s); /* "file:///..." or "s3://bucket/prefix" */
/* Frees s. s3:// cancels what is in flight (callbacks run with ECANCELED); file://
 * requests run on the pool, so free the pool first (that runs their callbacks), then
 * close the store. */
void store_close(struct store *s);

/* 1 if key is acceptable (see above). */
int store_key_valid(const char *key);

/* Backends: a const table each, found by URL scheme. */
struct store_backend {
	const char *scheme;
	void *(*open)(struct ev_loop *loop, struct pool *pool, const struct hsm_store_cfg *cfg,
		      char *err, size_t errlen);
	void (*get)(void *impl, const char *key, uint64_t off, uint64_t len, store_get_cb cb,
		    void *arg);
	void (*put)(void *impl, const char *key, const void *data, size_t len, store_done_cb cb,
		    void *arg);
	void (*head)(void *impl, const char *key, store_head_cb cb, void *arg);
	void (*del)(void *impl, const char *key, store_done_cb cb, void *arg);
	void (*list)(void *impl, const char *prefix, store_list_cb cb, void *arg);
	unsigned (*pending)(const void *impl);
	void (*close)(void *impl);
};

extern const struct store_backend store_backend_file;
extern const struct store_backend store_backend_s3;

#endif
