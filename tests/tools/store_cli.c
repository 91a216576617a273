/* store_cli: drives the object store of an hsmd config from the command line, for
 * integration tests. Each verb runs one store call (or many, for fill) on an event
 * loop until its callbacks have run, and checks the store's contract on the way:
 * no callback inside the starting call, exactly one per call, pending() counts.
 *
 *   store_cli CONFIG put KEY FILE
 *   store_cli CONFIG get KEY [OFF LEN]     the bytes go to stdout
 *   store_cli CONFIG head KEY              prints "present SIZE" or "absent"
 *   store_cli CONFIG delete KEY
 *   store_cli CONFIG list PREFIX           prints the keys, sorted, one a line
 *   store_cli CONFIG fill PREFIX COUNT     puts COUNT small objects PREFIX000000..
 *                                          all at once (they queue)
 *   store_cli CONFIG cancel KEY FILE       starts a put and a get, closes the store
 *                                          at once: both must end with ECANCELED
 *
 * Exit status: 0 done, 1 the store reported an error (on stderr, with its errno
 * name), 2 usage or setup error. */
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "recall/store.h"

struct cli {
	struct ev_loop *loop;
	struct store *store;
	const char *verb;
	const char *key;
	unsigned expected; /* callbacks still to come */
	unsigned failed;
	int in_call;       /* inside a store_* call: a callback now breaks the contract */
	int err;           /* last error */
	unsigned cancelled;
};

static const char *cli_errname(int err)
{
	switch (err) {
	case ENOENT:
		return "ENOENT";
	case EACCES:
		return "EACCES";
	case EIO:
		return "EIO";
	case ETIMEDOUT:
		return "ETIMEDOUT";
	case EINVAL:
		return "EINVAL";
	case ECANCELED:
		return "ECANCELED";
	default:
		return "E?";
	}
}

/* Bookkeeping common to every callback; returns 0 on success. */
static int cli_answer(struct cli *c, int err, const char *msg)
{
	if (c->in_call) {
		fprintf(stderr, "store_cli: %s %s: callback ran inside the starting call\n",
			c->verb, c->key);
		c->failed++;
	}
	if (c->expected == 0) {
		fprintf(stderr, "store_cli: %s %s: more callbacks than calls\n", c->verb, c->key);
		c->failed++;
		return -1;
	}
	c->expected--;
	if (!err)
		return 0;
	if (err == ECANCELED)
		c->cancelled++;
	c->err = err;
	c->failed++;
	fprintf(stderr, "store_cli: %s %s failed (%s): %s\n", c->verb, c->key, cli_errname(err),
		msg ? msg : "(no message)");
	if (!msg || !*msg)
		fprintf(stderr, "store_cli: %s %s: an error without a message\n", c->verb, c->key);
	return -1;
}

static void cli_done_cb(void *arg, int err, const char *msg)
{
	cli_answer(arg, err, msg);
}

static void cli_get_cb(void *arg, int err, const char *msg, uint8_t *data, size_t len)
{
	struct cli *c = arg;

	if (cli_answer(c, err, msg) == 0 &&
	    (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)) {
		fprintf(stderr, "store_cli: get %s: writing stdout: %s\n", c->key,
			strerror(errno));
		c->failed++;
	}
	if (err && data) {
		fprintf(stderr, "store_cli: get %s: data with an error\n", c->key);
		c->failed++;
	}
	free(data);
}

static void cli_head_cb(void *arg, int err, const char *msg, int exists, uint64_t size)
{
	struct cli *c = arg;

	if (cli_answer(c, err, msg) != 0)
		return;
	if (exists)
		printf("present %" PRIu64 "\n", size);
	else
		printf("absent\n");
}

static int cli_strcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void cli_list_cb(void *arg, int err, const char *msg, char **keys, size_t n)
{
	struct cli *c = arg;

	if (cli_answer(c, err, msg) == 0) {
		qsort(keys, n, sizeof(*keys), cli_strcmp);
		for (size_t i = 0; i < n; i++)
			printf("%s\n", keys[i]);
	}
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
}

static int cli_read_file(const char *path, uint8_t **data, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t got = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "store_cli: %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*len = (size_t)st.st_size;
	*data = malloc(*len ? *len : 1);
	if (!*data) {
		fprintf(stderr, "store_cli: %s: out of memory\n", path);
		close(fd);
		return -1;
	}
	while (got < *len) {
		ssize_t n = read(fd, *data + got, *len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "store_cli: reading %s: %s\n", path,
				n < 0 ? strerror(errno) : "file shrank");
			free(*data);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	return 0;
}

static int cli_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return (errno || end == s || *end || *s == '-') ? -1 : 0;
}

static void cli_run(struct cli *c)
{
	while (c->expected)
		ev_run(c->loop, EVRUN_ONCE);
}

/* Puts COUNT objects at once; all must be pending before the loop runs. */
static int cli_fill(struct cli *c, const char *prefix, const char *count_s)
{
	uint64_t count;
	char (*keys)[600];
	int rc = 0;

	if (cli_u64(count_s, &count) < 0 || count == 0 || count > 1000000) {
		fprintf(stderr, "store_cli: fill: bad count '%s'\n", count_s);
		return 2;
	}
	keys = calloc(count, sizeof(*keys));
	if (!keys)
		return 2;
	for (uint64_t i = 0; i < count; i++) {
		snprintf(keys[i], sizeof(keys[i]), "%s%06" PRIu64, prefix, i);
		c->expected++;
		c->in_call = 1;
		store_put(c->store, keys[i], keys[i], strlen(keys[i]), cli_done_cb, c);
		c->in_call = 0;
	}
	if (store_pending(c->store) != count) {
		fprintf(stderr, "store_cli: fill: pending %u after %" PRIu64 " puts\n",
			store_pending(c->store), count);
		rc = 1;
	}
	cli_run(c);
	if (store_pending(c->store) != 0) {
		fprintf(stderr, "store_cli: fill: pending %u after all callbacks\n",
			store_pending(c->store));
		rc = 1;
	}
	free(keys);
	return rc;
}

/* close() must answer what is in flight with ECANCELED, once each. */
static int cli_cancel(struct cli *c, const uint8_t *data, size_t len)
{
	c->expected = 2;
	c->in_call = 1;
	store_put(c->store, c->key, data, len, cli_done_cb, c);
	store_get(c->store, c->key, 0, 0, cli_get_cb, c);
	c->in_call = 0;
	/* One turn: the requests are on their way, not finished. */
	ev_run(c->loop, EVRUN_NOWAIT);
	store_close(c->store);
	c->store = NULL;
	if (c->expected || c->cancelled != 2) {
		fprintf(stderr, "store_cli: cancel: %u callbacks missing, %u cancelled\n",
			c->expected, c->cancelled);
		return 1;
	}
	/* Those two errors were the point. */
	c->failed -= c->cancelled;
	printf("cancelled 2\n");
	return 0;
}

static int cli_verb(struct cli *c, int argc, char **argv)
{
	const char *v = c->verb;
	uint8_t *data = NULL;
	size_t len = 0;
	uint64_t off = 0, glen = 0;
	int rc;

	if ((!strcmp(v, "put") || !strcmp(v, "cancel")) && argc == 5) {
		if (cli_read_file(argv[4], &data, &len) < 0)
			return 2;
		if (!strcmp(v, "cancel")) {
			rc = cli_cancel(c, data, len);
			free(data);
			return rc;
		}
		c->expected = 1;
		c->in_call = 1;
		store_put(c->store, c->key, data, len, cli_done_cb, c);
	} else if (!strcmp(v, "get") && (argc == 4 || argc == 6)) {
		if (argc == 6 && (cli_u64(argv[4], &off) < 0 || cli_u64(argv[5], &glen) < 0)) {
			fprintf(stderr, "store_cli: get: bad offset or length\n");
			return 2;
		}
		c->expected = 1;
		c->in_call = 1;
		store_get(c->store, c->key, off, glen, cli_get_cb, c);
	} else if (!strcmp(v, "head") && argc == 4) {
		c->expected = 1;
		c->in_call = 1;
		store_head(c->store, c->key, cli_head_cb, c);
	} else if (!strcmp(v, "delete") && argc == 4) {
		c->expected = 1;
		c->in_call = 1;
		store_delete(c->store, c->key, cli_done_cb, c);
	} else if (!strcmp(v, "list") && argc == 4) {
		c->expected = 1;
		c->in_call = 1;
		store_list(c->store, c->key, cli_list_cb, c);
	} else if (!strcmp(v, "fill") && argc == 5) {
		return cli_fill(c, c->key, argv[4]);
	} else {
		fprintf(stderr, "usage: store_cli CONFIG put KEY FILE | get KEY [OFF LEN] | "
				"head KEY | delete KEY | list PREFIX | fill PREFIX COUNT | "
				"cancel KEY FILE\n");
		return 2;
	}
	c->in_call = 0;
	if (store_pending(c->store) != 1) {
		fprintf(stderr, "store_cli: %s: pending is %u, not 1, after the call\n", v,
			store_pending(c->store));
		c->failed++;
	}
	cli_run(c);
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	struct hsm_config *cfg = NULL;
	struct pool *pool = NULL;
	struct cli c = { 0 };
	char err[1024];
	int rc;

	if (argc < 4) {
		fprintf(stderr, "usage: store_cli CONFIG VERB ARGS...\n");
		return 2;
	}
	log_init("store_cli", LOG_LVL_WARN, 1);
	if (config_load(argv[1], &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "store_cli: %s\n", err);
		return 2;
	}
	c.verb = argv[2];
	c.key = argv[3];
	c.loop = ev_loop_new(EVFLAG_AUTO);
	pool = c.loop ? pool_new(c.loop, 1) : NULL;
	if (!pool) {
		fprintf(stderr, "store_cli: cannot make the event loop or pool\n");
		rc = 2;
		goto out;
	}
	c.store = store_open(c.loop, pool, &cfg->store, err, sizeof(err));
	if (!c.store) {
		fprintf(stderr, "store_cli: %s: %s\n", cfg->store.url, err);
		rc = 2;
		goto out;
	}
	rc = cli_verb(&c, argc, argv);
	if (rc == 0 && c.failed)
		rc = 1;
out:
	store_close(c.store);
	if (pool)
		pool_free(pool);
	if (c.loop)
		ev_loop_destroy(c.loop);
	config_free(cfg);
	return rc;
}
