/* Unit tests of the peer server (lib/https_server.c), on a real socket at 127.0.0.1:0
 * with certificates made by lib/pki.c: the libcurl client (lib/http.c) on the same loop
 * for well-behaved peers (GET with query, 8 MiB answer, keep-alive reuse, an answer
 * given 1 s later from a timer, a refused CN, a foreign CA, no certificate, limits that
 * curl can break: header, URL, rate); raw TLS clients on a thread of their own for the
 * hostile ones (TLS 1.2 only, no TLS at all, a body announced too large, malformed and
 * disallowed requests, chunked bodies, pipelining, HEAD, slowloris, idle, too many
 * connections, clients that leave mid-request, mid-answer or while the handler holds
 * their request, and the server freed with a request pending). The pure helpers
 * (listen address, query and path decoding) are checked too.
 *
 * Assertions are made only on the test (loop) thread: raw clients record what they saw
 * and the test checks it after the loop returns. Run under valgrind to see that every
 * one of these paths frees everything. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "lib/http.h"
#include "lib/https_server.h"
#include "lib/log.h"
#include "lib/pki.h"

#define BIG_LEN	  (8u << 20)
#define WATCHDOG  10.0 /* seconds for any one wait; only a hung server gets near it */
#define RAW_RCVTO 5    /* seconds a raw client waits for a byte */

/* Certificates, made once for the whole program. */
struct pki_files {
	char root[256];
	char ca[320], srv_crt[320], srv_key[320];
	char alpha_crt[320], alpha_key[320];	 /* authorized */
	char mallory_crt[320], mallory_key[320]; /* our CA, CN not authorized */
	char other_crt[320], other_key[320];	 /* CN alpha, signed by another CA */
};

static struct pki_files pk;

struct fx {
	struct ev_loop *loop;
	struct https_server *srv;
	struct http_client *hc;
	ev_timer watchdog;
	ev_async wake;
	int timed_out;
	/* what the handler saw */
	int nreq;
	char method[8], path[4096], query[256], cn[80], remote[80], body[256];
	size_t body_len;
	char xhdr[64];
	struct https_req *held;	 /* /hold: never answered by the handler */
	struct https_req *later; /* /later: answered by the timer */
	ev_timer later_timer;
	int free_in_handler; /* /free: the handler frees the server */
	/* curl answers */
	unsigned outstanding;
	int keep_going; /* the http callback starts another request */
};

/* ---- certificates ------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	const char *tmp = getenv("TMPDIR");
	const char *hosts[] = {"127.0.0.1"};
	char err[512], ca_dir[300], other_dir[300];

	(void)state;
	/* A client that leaves mid-answer must not kill the test (hsmd ignores it too). */
	signal(SIGPIPE, SIG_IGN);
	log_init("test_https_server", getenv("TEST_DEBUG") ? LOG_LVL_DEBUG : LOG_LVL_ERROR, 1);
	snprintf(pk.root, sizeof(pk.root), "%s/test_https.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(pk.root))
		return -1;
	snprintf(ca_dir, sizeof(ca_dir), "%s/ca", pk.root);
	snprintf(other_dir, sizeof(other_dir), "%s/other", pk.root);
	if (pki_ca_init(ca_dir, "testca", 60, err, sizeof(err)) < 0 ||
	    pki_issue(ca_dir, "srv", hosts, 1, 30, err, sizeof(err)) < 0 ||
	    pki_issue(ca_dir, "alpha", NULL, 0, 30, err, sizeof(err)) < 0 ||
	    pki_issue(ca_dir, "mallory", NULL, 0, 30, err, sizeof(err)) < 0 ||
	    pki_ca_init(other_dir, "otherca", 60, err, sizeof(err)) < 0 ||
	    pki_issue(other_dir, "alpha", NULL, 0, 30, err, sizeof(err)) < 0) {
		fprintf(stderr, "pki: %s\n", err);
		return -1;
	}
	snprintf(pk.ca, sizeof(pk.ca), "%s/ca.crt", ca_dir);
	snprintf(pk.srv_crt, sizeof(pk.srv_crt), "%s/srv.crt", ca_dir);
	snprintf(pk.srv_key, sizeof(pk.srv_key), "%s/srv.key", ca_dir);
	snprintf(pk.alpha_crt, sizeof(pk.alpha_crt), "%s/alpha.crt", ca_dir);
	snprintf(pk.alpha_key, sizeof(pk.alpha_key), "%s/alpha.key", ca_dir);
	snprintf(pk.mallory_crt, sizeof(pk.mallory_crt), "%s/mallory.crt", ca_dir);
	snprintf(pk.mallory_key, sizeof(pk.mallory_key), "%s/mallory.key", ca_dir);
	snprintf(pk.other_crt, sizeof(pk.other_crt), "%s/alpha.crt", other_dir);
	snprintf(pk.other_key, sizeof(pk.other_key), "%s/alpha.key", other_dir);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	return nftw(pk.root, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* ---- server side -------------------------------------------------------------------- */

static int authorize(void *ctx, const char *cn)
{
	(void)ctx;
	return strcmp(cn, "alpha") == 0 ? 0 : 1;
}

static void later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fx *f = w->data;

	(void)loop;
	(void)revents;
	https_respond(f->later, 200, "text/plain", NULL, strdup("later"), 5);
	f->later = NULL;
}

static char *big_body(void)
{
	char *b = malloc(BIG_LEN);

	for (size_t i = 0; b && i < BIG_LEN; i++)
		b[i] = (char)('a' + (i * 7 + i / 4096) % 26);
	return b;
}

static void handler(void *ctx, struct https_req *r)
{
	struct fx *f = ctx;
	const char *x = https_req_header(r, "X-Test");

	f->nreq++;
	snprintf(f->method, sizeof(f->method), "%s", r->method);
	snprintf(f->path, sizeof(f->path), "%s", r->path);
	snprintf(f->query, sizeof(f->query), "%s", r->query);
	snprintf(f->cn, sizeof(f->cn), "%s", r->peer_cn);
	snprintf(f->remote, sizeof(f->remote), "%s", r->remote);
	snprintf(f->body, sizeof(f->body), "%s", r->body);
	snprintf(f->xhdr, sizeof(f->xhdr), "%s", x ? x : "");
	f->body_len = r->body_len;
	if (strcmp(r->path, "/echo") == 0) {
		static const char *const hdrs[] = {"X-Echo: yes", "Bad\r\nInjected: 1",
						   "Content-Length: 5", NULL};
		char *b = NULL;
		int n = asprintf(&b, "%s %s %s %s %zu:%s", r->method, r->path, r->query, r->peer_cn,
				 r->body_len, r->body);

		https_respond(r, 200, "text/plain", hdrs, n < 0 ? NULL : b, n < 0 ? 0 : (size_t)n);
	} else if (strcmp(r->path, "/big") == 0) {
		https_respond(r, 200, "application/octet-stream", NULL, big_body(), BIG_LEN);
	} else if (strcmp(r->path, "/later") == 0) {
		f->later = r;
		ev_timer_init(&f->later_timer, later_cb, 1.0, 0.0);
		f->later_timer.data = f;
		ev_timer_start(f->loop, &f->later_timer);
	} else if (strcmp(r->path, "/hold") == 0) {
		f->held = r;
	} else if (strcmp(r->path, "/free") == 0) {
		f->held = r;
		https_server_free(f->srv);
		f->srv = NULL;
	} else {
		https_respond(r, 404, "text/plain", NULL, strdup("no\n"), 3);
	}
}

static void watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct fx *f = w->data;

	(void)revents;
	f->timed_out = 1;
	ev_break(loop, EVBREAK_ALL);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until something breaks it, at most secs. */
static void run_for(struct fx *f, double secs)
{
	f->timed_out = 0;
	ev_timer_set(&f->watchdog, secs, 0.0);
	ev_timer_start(f->loop, &f->watchdog);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->watchdog);
}

static void fx_cfg(struct https_server_cfg *cfg, struct fx *f)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = "127.0.0.1:0";
	cfg->cert_file = pk.srv_crt;
	cfg->key_file = pk.srv_key;
	cfg->ca_file = pk.ca;
	cfg->authorize = authorize;
	cfg->handler = handler;
	cfg->ctx = f;
}

static void fx_start(struct fx *f, const struct https_server_cfg *cfg)
{
	char err[512] = "";

	f->srv = https_server_new(f->loop, cfg, err, sizeof(err));
	if (!f->srv)
		fail_msg("https_server_new: %s", err);
	assert_true(https_server_port(f->srv) > 0);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	if (!f)
		return -1;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop)
		return -1;
	f->hc = http_client_new(f->loop, 0, err, sizeof(err));
	if (!f->hc)
		return -1;
	ev_timer_init(&f->watchdog, watchdog_cb, WATCHDOG, 0.0);
	f->watchdog.data = f;
	ev_async_init(&f->wake, wake_cb);
	ev_async_start(f->loop, &f->wake);
	/* The async watcher must not keep ev_run alive by itself. */
	ev_unref(f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	http_client_free(f->hc);
	https_server_free(f->srv);
	ev_timer_stop(f->loop, &f->later_timer);
	ev_ref(f->loop);
	ev_async_stop(f->loop, &f->wake);
	ev_loop_destroy(f->loop);
	free(f);
	return 0;
}

/* ---- curl clients ------------------------------------------------------------------- */

struct cres {
	struct fx *f;
	long status;
	int curl_code;
	char *body;
	size_t body_len;
	int done;
};

static void curl_done(void *arg, struct http_resp *resp)
{
	struct cres *c = arg;

	c->status = resp->status;
	c->curl_code = resp->curl_code;
	c->body = http_resp_take_body(resp, &c->body_len);
	c->done = 1;
	if (--c->f->outstanding == 0)
		ev_break(c->f->loop, EVBREAK_ALL);
}

enum who { AS_ALPHA, AS_MALLORY, AS_OTHER_CA, AS_NOBODY };

static void curl_start_body(struct fx *f, struct cres *c, const char *method, const char *target,
			    enum who who, const char *const *headers, const char *body,
			    size_t body_len)
{
	char url[8192], err[256];
	struct http_req req = {0};

	snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", https_server_port(f->srv), target);
	memset(c, 0, sizeof(*c));
	c->f = f;
	req.method = method;
	req.url = url;
	req.headers = headers;
	req.body = body;
	req.body_len = body_len;
	req.ca_file = pk.ca;
	req.total_timeout = 8;
	if (who == AS_ALPHA) {
		req.cert_file = pk.alpha_crt;
		req.key_file = pk.alpha_key;
	} else if (who == AS_MALLORY) {
		req.cert_file = pk.mallory_crt;
		req.key_file = pk.mallory_key;
	} else if (who == AS_OTHER_CA) {
		req.cert_file = pk.other_crt;
		req.key_file = pk.other_key;
	}
	if (!http_start(f->hc, &req, curl_done, c, err, sizeof(err)))
		fail_msg("http_start: %s", err);
	f->outstanding++;
}

static void curl_start(struct fx *f, struct cres *c, const char *method, const char *target,
		       enum who who, const char *const *headers)
{
	curl_start_body(f, c, method, target, who, headers, NULL, 0);
}

static void curl_one(struct fx *f, struct cres *c, const char *method, const char *target,
		     enum who who, const char *const *headers)
{
	curl_start(f, c, method, target, who, headers);
	run_for(f, WATCHDOG);
	assert_false(f->timed_out);
	assert_true(c->done);
}

/* ---- raw TLS clients on a thread ---------------------------------------------------- */

struct raw {
	struct fx *f;
	int port;
	const char *cert, *key; /* NULL: no client certificate */
	int tls12;		/* offer TLS 1.2 at most */
	int no_tls;		/* plain TCP, never a handshake */
	const char *req;	/* sent after the handshake */
	size_t req_len;
	int trickle;	   /* one byte of req every 100 ms until the server closes */
	size_t read_max;   /* close after this many bytes of answer (0: until EOF) */
	int close_at_once; /* close right after sending req */
	int wait_idle;	   /* send nothing; wait for the server to close */
	const char *req2;  /* sent once the first answer's head has arrived */
	/* results */
	int tls_ok;
	char resp[65536];
	size_t resp_len;
	int server_closed; /* EOF or error from the server */
	double elapsed;	   /* from the end of the handshake to the server's close */
	pthread_t th;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int raw_connect(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_sec = RAW_RCVTO};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0 ||
	    connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Reads the answer into r->resp until EOF, an error, or read_max. */
static void raw_read(struct raw *r, SSL *ssl, int fd, double t0)
{
	for (;;) {
		int n;
		size_t room = sizeof(r->resp) - 1 - r->resp_len;
		char sink[16384];

		if (r->read_max && r->resp_len >= r->read_max)
			return;
		if (ssl)
			n = SSL_read(ssl, room ? r->resp + r->resp_len : sink,
				     room ? (int)room : (int)sizeof(sink));
		else
			n = (int)read(fd, r->resp + r->resp_len, room);
		if (n <= 0) {
			r->server_closed = 1;
			r->elapsed = now_s() - t0;
			return;
		}
		if (room)
			r->resp_len += (size_t)n;
		r->resp[r->resp_len] = '\0';
	}
}

static void raw_trickle(struct raw *r, SSL *ssl, int fd, double t0)
{
	for (size_t i = 0; i < r->req_len; i++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (SSL_write(ssl, r->req + i, 1) <= 0)
			break;
		if (poll(&pfd, 1, 100) > 0) {
			int n = SSL_read(ssl, r->resp + r->resp_len,
					 (int)(sizeof(r->resp) - 1 - r->resp_len));

			if (n <= 0)
				break;
			r->resp_len += (size_t)n;
			r->resp[r->resp_len] = '\0';
		}
	}
	r->server_closed = 1;
	r->elapsed = now_s() - t0;
}

static void *raw_main(void *arg)
{
	struct raw *r = arg;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	int fd = raw_connect(r->port);
	double t0;

	if (fd < 0)
		goto out;
	if (r->no_tls) {
		t0 = now_s();
		raw_read(r, NULL, fd, t0);
		goto out;
	}
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || SSL_CTX_load_verify_locations(ctx, pk.ca, NULL) != 1)
		goto out;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (r->tls12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	if (r->cert && (SSL_CTX_use_certificate_chain_file(ctx, r->cert) != 1 ||
			SSL_CTX_use_PrivateKey_file(ctx, r->key, SSL_FILETYPE_PEM) != 1))
		goto out;
	ssl = SSL_new(ctx);
	if (!ssl || SSL_set_fd(ssl, fd) != 1)
		goto out;
	if (SSL_connect(ssl) != 1) {
		r->server_closed = 1;
		goto out;
	}
	r->tls_ok = 1;
	t0 = now_s();
	if (r->wait_idle) {
		raw_read(r, ssl, fd, t0);
		goto out;
	}
	if (r->trickle) {
		raw_trickle(r, ssl, fd, t0);
		goto out;
	}
	if (r->req_len && SSL_write(ssl, r->req, (int)r->req_len) != (int)r->req_len)
		goto out;
	if (r->req2) {
		while (!strstr(r->resp, "\r\n\r\n")) {
			int n = SSL_read(ssl, r->resp + r->resp_len,
					 (int)(sizeof(r->resp) - 1 - r->resp_len));

			if (n <= 0)
				goto out;
			r->resp_len += (size_t)n;
			r->resp[r->resp_len] = '\0';
		}
		if (SSL_write(ssl, r->req2, (int)strlen(r->req2)) <= 0)
			goto out;
	}
	if (!r->close_at_once)
		raw_read(r, ssl, fd, t0);
out:
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	ev_async_send(r->f->loop, &r->f->wake);
	return NULL;
}

static struct raw *raw_new(struct fx *f, const char *req)
{
	struct raw *r = calloc(1, sizeof(*r));

	assert_non_null(r);
	r->f = f;
	r->port = https_server_port(f->srv);
	r->cert = pk.alpha_crt;
	r->key = pk.alpha_key;
	r->req = req;
	r->req_len = req ? strlen(req) : 0;
	return r;
}

/* Runs the raw client to its end while the loop serves it. */
static void raw_run(struct fx *f, struct raw *r)
{
	assert_int_equal(pthread_create(&r->th, NULL, raw_main, r), 0);
	run_for(f, 3 * RAW_RCVTO);
	assert_false(f->timed_out);
	assert_int_equal(pthread_join(r->th, NULL), 0);
}

/* Runs the loop until no connection is left (the server noticed every close). */
static void settle(struct fx *f)
{
	for (int i = 0; i < 200 && f->srv && https_server_connections(f->srv) > 0; i++)
		run_for(f, 0.02);
	if (f->srv)
		assert_int_equal(https_server_connections(f->srv), 0);
}

static void assert_status(const struct raw *r, int status)
{
	char want[32];

	snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
	if (strncmp(r->resp, want, strlen(want)) != 0)
		fail_msg("wanted %s, got \"%.200s\"", want, r->resp);
}

/* ---- tests: pure helpers ------------------------------------------------------------ */

static void test_parse_listen(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[256];

	(void)state;
	assert_int_equal(https_parse_listen("0.0.0.0:7443", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 7443);
	assert_int_equal(https_parse_listen("10.1.2.3:0", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(https_parse_listen("[::1]:7443", &ss, &len, err, sizeof(err)), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_int_equal(https_parse_listen("[::]:65535", &ss, &len, err, sizeof(err)), 0);
	static const char *const bad[] = {
	    "",		 "7443",	  "host:7443",	 "1.2.3.4",	"1.2.3.4:",
	    "1.2.3.4:x", "1.2.3.4:65536", "::1:7443",	 "[::1]7443",	"[::1:7443",
	    "[]:1",	 "1.2.3.4:-1",	  "1.2.3.4: 80", "[1.2.3.4]:80"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		if (https_parse_listen(bad[i], &ss, &len, err, sizeof(err)) != -1)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_non_null(strstr(err, "ADDR:PORT"));
	}
}

static void test_query_path(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(https_query_get("a=1&since=42&x", "since", out, sizeof(out)), 0);
	assert_string_equal(out, "42");
	assert_int_equal(https_query_get("a=1&since=42&x", "x", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	assert_int_equal(https_query_get("a=1&since=42", "sinc", out, sizeof(out)), 1);
	assert_int_equal(https_query_get("", "a", out, sizeof(out)), 1);
	assert_int_equal(https_query_get("p=a%2Fb+c%20d", "p", out, sizeof(out)), 0);
	assert_string_equal(out, "a/b c d");
	assert_int_equal(https_query_get("k%61y=v", "kay", out, sizeof(out)), 0);
	assert_string_equal(out, "v");
	assert_int_equal(https_query_get("p=%zz", "p", out, sizeof(out)), -1);
	assert_int_equal(https_query_get("p=%4", "p", out, sizeof(out)), -1);
	assert_int_equal(https_query_get("p=a%00b", "p", out, sizeof(out)), -1);
	assert_int_equal(https_query_get("p=0123456789abcdef", "p", out, sizeof(out)), -1);
	assert_int_equal(https_query_get("p=0123456789abcde", "p", out, sizeof(out)), 0);
	assert_int_equal(https_query_get("p=%zz&q=1", "q", out, sizeof(out)), 0);
	assert_string_equal(out, "1");

	assert_int_equal(https_path_decode("/v/a%20b+c", out, sizeof(out)), 0);
	assert_string_equal(out, "/v/a b+c");
	assert_int_equal(https_path_decode("/a%00", out, sizeof(out)), -1);
	assert_int_equal(https_path_decode("/a%", out, sizeof(out)), -1);
	assert_int_equal(https_path_decode("/a%2", out, sizeof(out)), -1);
	assert_int_equal(https_path_decode("/a%g0", out, sizeof(out)), -1);
	assert_int_equal(https_path_decode("/0123456789abcdef", out, sizeof(out)), -1);
	assert_int_equal(https_path_decode("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
}

static void test_new_errors(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	char err[512];

	fx_cfg(&cfg, f);
	cfg.listen = "localhost:80";
	assert_null(https_server_new(f->loop, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "localhost:80"));
	fx_cfg(&cfg, f);
	cfg.cert_file = "/nonexistent/srv.crt";
	assert_null(https_server_new(f->loop, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/srv.crt"));
	fx_cfg(&cfg, f);
	cfg.key_file = pk.alpha_key; /* another certificate's key */
	assert_null(https_server_new(f->loop, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "does not match"));
	fx_cfg(&cfg, f);
	cfg.ca_file = "/nonexistent/ca.crt";
	assert_null(https_server_new(f->loop, &cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/ca.crt"));
	/* A port taken: the second bind fails and says where. */
	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	{
		char listen_s[64];

		snprintf(listen_s, sizeof(listen_s), "127.0.0.1:%d", https_server_port(f->srv));
		cfg.listen = listen_s;
		assert_null(https_server_new(f->loop, &cfg, err, sizeof(err)));
		assert_non_null(strstr(err, listen_s));
		assert_non_null(strstr(err, "bind"));
	}
}

/* ---- tests: well-behaved peers ------------------------------------------------------ */

static void test_get_echo(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c;
	static const char *const hdrs[] = {"X-Test: hello  ", NULL};

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	curl_one(f, &c, "GET", "/echo?since=12&v=a%20b", AS_ALPHA, hdrs);
	assert_int_equal(c.curl_code, 0);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.body, "GET /echo since=12&v=a%20b alpha 0:");
	assert_int_equal(f->nreq, 1);
	assert_string_equal(f->method, "GET");
	assert_string_equal(f->path, "/echo");
	assert_string_equal(f->query, "since=12&v=a%20b");
	assert_string_equal(f->cn, "alpha");
	assert_string_equal(f->xhdr, "hello");
	assert_true(strncmp(f->remote, "127.0.0.1:", 10) == 0);
	free(c.body);

	/* POST with a body. */
	{
		struct http_req req = {0};
		char url[128], err[256];

		snprintf(url, sizeof(url), "https://127.0.0.1:%d/echo", https_server_port(f->srv));
		memset(&c, 0, sizeof(c));
		c.f = f;
		req.method = "POST";
		req.url = url;
		req.body = "payload";
		req.body_len = 7;
		req.ca_file = pk.ca;
		req.cert_file = pk.alpha_crt;
		req.key_file = pk.alpha_key;
		req.total_timeout = 8;
		assert_non_null(http_start(f->hc, &req, curl_done, &c, err, sizeof(err)));
		f->outstanding++;
		run_for(f, WATCHDOG);
		assert_int_equal(c.status, 200);
		assert_string_equal(c.body, "POST /echo  alpha 7:payload");
		free(c.body);
	}
	/* Unknown path: whatever the handler says. */
	curl_one(f, &c, "GET", "/nothing", AS_ALPHA, NULL);
	assert_int_equal(c.status, 404);
	free(c.body);
}

static void test_big_and_keepalive(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c;
	char first_remote[80];
	char *want = big_body();

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	curl_one(f, &c, "GET", "/big", AS_ALPHA, NULL);
	assert_int_equal(c.curl_code, 0);
	assert_int_equal(c.status, 200);
	assert_int_equal(c.body_len, BIG_LEN);
	assert_memory_equal(c.body, want, BIG_LEN);
	free(c.body);
	free(want);
	snprintf(first_remote, sizeof(first_remote), "%s", f->remote);
	/* The same connection again (curl keeps it): same client port. */
	curl_one(f, &c, "GET", "/echo", AS_ALPHA, NULL);
	assert_int_equal(c.status, 200);
	free(c.body);
	assert_string_equal(f->remote, first_remote);
	assert_int_equal(https_server_connections(f->srv), 1);
	/* HEAD: Content-Length of the body, no body. */
	curl_one(f, &c, "HEAD", "/big", AS_ALPHA, NULL);
	assert_int_equal(c.curl_code, 0);
	assert_int_equal(c.status, 200);
	assert_int_equal(c.body_len, 0);
	free(c.body);
	assert_string_equal(f->remote, first_remote);
}

static void test_deferred(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c;
	double t0;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	t0 = now_s();
	curl_one(f, &c, "GET", "/later", AS_ALPHA, NULL);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.body, "later");
	assert_true(now_s() - t0 >= 0.9);
	free(c.body);
}

/* ---- tests: who may talk ------------------------------------------------------------ */

static void test_refused_peers(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c;
	struct raw *r;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* Our CA, CN not a peer: 403. */
	curl_one(f, &c, "GET", "/echo", AS_MALLORY, NULL);
	assert_int_equal(c.status, 403);
	free(c.body);
	/* Same CN as a peer, another CA: no HTTP answer at all. */
	curl_one(f, &c, "GET", "/echo", AS_OTHER_CA, NULL);
	assert_int_equal(c.status, 0);
	assert_int_not_equal(c.curl_code, 0);
	free(c.body);
	/* No client certificate: no HTTP answer. */
	curl_one(f, &c, "GET", "/echo", AS_NOBODY, NULL);
	assert_int_equal(c.status, 0);
	assert_int_not_equal(c.curl_code, 0);
	free(c.body);
	assert_int_equal(f->nreq, 0);

	/* The same from a raw client, to see no HTTP byte ever comes. */
	r = raw_new(f, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	r->cert = NULL;
	raw_run(f, r);
	assert_null(strstr(r->resp, "HTTP/"));
	free(r);
	/* TLS 1.2 at most: refused in the handshake. */
	r = raw_new(f, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	r->tls12 = 1;
	raw_run(f, r);
	assert_false(r->tls_ok);
	assert_int_equal(r->resp_len, 0);
	free(r);
	assert_int_equal(f->nreq, 0);
	settle(f);
}

/* ---- tests: limits and bad requests ------------------------------------------------- */

static void test_limits_curl(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c;
	char *big_hdr = malloc(10000), *long_url = malloc(3000);
	const char *hdrs[] = {big_hdr, NULL};

	assert_non_null(big_hdr);
	assert_non_null(long_url);
	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	memcpy(big_hdr, "X-Big: ", 7);
	memset(big_hdr + 7, 'b', 9000);
	big_hdr[9007] = '\0';
	curl_one(f, &c, "GET", "/echo", AS_ALPHA, hdrs);
	assert_int_equal(c.status, 431);
	free(c.body);
	long_url[0] = '/';
	memset(long_url + 1, 'u', 2500);
	long_url[2501] = '\0';
	curl_one(f, &c, "GET", long_url, AS_ALPHA, NULL);
	assert_int_equal(c.status, 414);
	free(c.body);
	assert_int_equal(f->nreq, 0);
	free(big_hdr);
	free(long_url);
	settle(f);
}

static void test_bad_requests(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* Body announced too large: answered before a byte of it is sent. */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 413);
	assert_non_null(strstr(r->resp, "Connection: close"));
	free(r);
	/* Malformed header line. */
	r = raw_new(f, "GET /echo HTTP/1.1\r\nBad Header Line\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 400);
	free(r);
	/* Not HTTP at all. */
	r = raw_new(f, "\x01\x02\x03 hello\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 400);
	free(r);
	/* Not a path. */
	r = raw_new(f, "GET http://x/echo HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 400);
	free(r);
	/* Content-Length and chunked together (request smuggling). */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n"
		       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 400);
	free(r);
	/* Methods other than GET, HEAD, POST. */
	r = raw_new(f, "DELETE /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 405);
	assert_non_null(strstr(r->resp, "\r\nAllow: GET, HEAD, POST\r\n"));
	free(r);
	/* Chunked body over the limit. */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
		       "200000\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
	raw_run(f, r);
	assert_status(r, 413);
	free(r);
	assert_int_equal(f->nreq, 0);
	settle(f);
}

static void test_raw_good(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;
	char *second;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* Chunked body within the limit; Connection: close ends the exchange. */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
		       "Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 200);
	assert_non_null(strstr(r->resp, "\r\n\r\nPOST /echo  alpha 11:hello world"));
	assert_non_null(strstr(r->resp, "X-Echo: yes\r\n"));
	assert_non_null(strstr(r->resp, "Content-Length: 32\r\n"));
	assert_null(strstr(r->resp, "Injected"));
	assert_non_null(strstr(r->resp, "Connection: close\r\n"));
	free(r);
	/* Two pipelined requests in one write: two answers, in order. */
	r = raw_new(f, "GET /echo?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
		       "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 200);
	second = strstr(r->resp + 1, "HTTP/1.1 200 ");
	assert_non_null(second);
	assert_non_null(strstr(r->resp, "GET /echo n=1 alpha"));
	assert_true(strstr(r->resp, "GET /echo n=1 alpha") < second);
	assert_non_null(strstr(second, "GET /echo n=2 alpha"));
	assert_int_equal(f->nreq, 3);
	free(r);
	/* HEAD: headers only. */
	r = raw_new(f, "HEAD /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 200);
	assert_non_null(strstr(r->resp, "Content-Length: 20\r\n"));
	assert_true(strlen(strstr(r->resp, "\r\n\r\n")) == 4);
	free(r);
	/* HTTP/1.0 without keep-alive: answered, then closed. */
	r = raw_new(f, "GET /echo HTTP/1.0\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 200);
	assert_true(r->server_closed);
	free(r);
	settle(f);
}

static void test_continue_and_bodies(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;
	struct cres c;
	size_t max = HTTPS_MAX_BODY_DEFAULT;
	char *body = malloc(max + 1);

	assert_non_null(body);
	memset(body, 'p', max + 1);
	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* The client waits for "100 Continue" before it sends the body. */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
		       "Content-Length: 5\r\nConnection: close\r\n\r\n");
	r->req2 = "hello";
	raw_run(f, r);
	assert_status(r, 100);
	assert_non_null(strstr(r->resp, "\r\n\r\nHTTP/1.1 200 OK\r\n"));
	assert_non_null(strstr(r->resp, "POST /echo  alpha 5:hello"));
	free(r);
	/* Too large: refused instead of "100 Continue". */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
		       "Content-Length: 1048577\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 413);
	free(r);
	/* curl: a body of exactly max_body passes, one byte more does not. */
	curl_start_body(f, &c, "POST", "/echo", AS_ALPHA, NULL, body, max);
	run_for(f, WATCHDOG);
	assert_int_equal(c.status, 200);
	assert_int_equal(f->body_len, max);
	assert_true(c.body_len > max);
	free(c.body);
	curl_start_body(f, &c, "POST", "/echo", AS_ALPHA, NULL, body, max + 1);
	run_for(f, WATCHDOG);
	assert_int_equal(c.status, 413);
	free(c.body);
	free(body);
	settle(f);
}

static void test_pipelined_behind_deferred(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;
	const char *first, *second;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	r = raw_new(f, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n"
		       "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	raw_run(f, r);
	assert_status(r, 200);
	first = strstr(r->resp, "\r\n\r\nlater");
	second = strstr(r->resp, "GET /echo n=2 alpha");
	assert_non_null(first);
	assert_non_null(second);
	assert_true(first < second);
	assert_int_equal(f->nreq, 2);
	free(r);
	settle(f);
}

static void test_ipv6_listen(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	char err[512];

	fx_cfg(&cfg, f);
	cfg.listen = "[::1]:0";
	f->srv = https_server_new(f->loop, &cfg, err, sizeof(err));
	if (!f->srv) {
		/* A host without IPv6 is no failure of ours. */
		assert_non_null(strstr(err, "[::1]:0"));
		skip();
	}
	assert_true(https_server_port(f->srv) > 0);
}

static void test_rate_limit(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct cres c[8];
	int ok = 0, limited = 0;

	fx_cfg(&cfg, f);
	cfg.rate = 0.1; /* no new token while the test runs */
	cfg.burst = 3;
	fx_start(f, &cfg);
	for (int i = 0; i < 8; i++)
		curl_start(f, &c[i], "GET", "/echo", AS_ALPHA, NULL);
	run_for(f, WATCHDOG);
	assert_false(f->timed_out);
	for (int i = 0; i < 8; i++) {
		if (c[i].status == 200)
			ok++;
		else if (c[i].status == 429)
			limited++;
		free(c[i].body);
	}
	assert_int_equal(ok + limited, 8);
	assert_int_equal(ok, 3);
	assert_int_equal(f->nreq, ok);
}

/* ---- tests: timeouts and connection limits ------------------------------------------ */

static void test_timeouts(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;

	fx_cfg(&cfg, f);
	cfg.idle_timeout = 0.5;
	cfg.request_timeout = 0.5;
	cfg.handshake_timeout = 0.5;
	fx_start(f, &cfg);
	/* Slowloris: one header byte every 100 ms, cut off 0.5 s after the first. */
	r = raw_new(f, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: "
		       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n");
	r->trickle = 1;
	raw_run(f, r);
	assert_true(r->server_closed);
	assert_true(r->elapsed >= 0.4 && r->elapsed < 3.0);
	assert_null(strstr(r->resp, "HTTP/"));
	free(r);
	/* Idle after the handshake. */
	r = raw_new(f, NULL);
	r->wait_idle = 1;
	raw_run(f, r);
	assert_true(r->tls_ok);
	assert_true(r->server_closed);
	assert_true(r->elapsed >= 0.4 && r->elapsed < 3.0);
	free(r);
	/* No handshake at all. */
	r = raw_new(f, NULL);
	r->no_tls = 1;
	raw_run(f, r);
	assert_true(r->server_closed);
	assert_true(r->elapsed >= 0.4 && r->elapsed < 3.0);
	free(r);
	assert_int_equal(f->nreq, 0);
	settle(f);
}

static void test_max_conns(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	int fds[3], closed = 0;

	fx_cfg(&cfg, f);
	cfg.max_conns = 2;
	fx_start(f, &cfg);
	for (int i = 0; i < 3; i++) {
		fds[i] = raw_connect(https_server_port(f->srv));
		assert_true(fds[i] >= 0);
	}
	run_for(f, 0.3);
	assert_int_equal(https_server_connections(f->srv), 2);
	for (int i = 0; i < 3; i++) {
		char b;

		if (recv(fds[i], &b, 1, MSG_DONTWAIT) == 0)
			closed++;
		close(fds[i]);
	}
	assert_int_equal(closed, 1);
	settle(f);
}

/* ---- tests: clients that leave ------------------------------------------------------ */

static void test_client_leaves(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* Mid-request: half a body, then gone. */
	r = raw_new(f, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabcdef");
	r->close_at_once = 1;
	raw_run(f, r);
	free(r);
	settle(f);
	/* Mid-answer: 8 MiB asked for, 1 KiB read. */
	r = raw_new(f, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
	r->read_max = 1024;
	raw_run(f, r);
	assert_status(r, 200);
	free(r);
	settle(f);
	/* While the handler holds the request: it learns the client has gone, and its
	 * late answer is dropped. */
	r = raw_new(f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	r->close_at_once = 1;
	raw_run(f, r);
	free(r);
	settle(f);
	assert_non_null(f->held);
	assert_true(https_req_gone(f->held));
	assert_string_equal(f->held->path, "/hold");
	https_respond(f->held, 200, "text/plain", NULL, strdup("late"), 4);
	f->held = NULL;
	assert_int_equal(f->nreq, 2);
}

static void test_free_with_pending(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	/* A held request and a half-read one, then the server goes: the client is told
	 * 503 (or sees the close), nothing leaks, the handler is not called again. */
	r = raw_new(f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
	assert_int_equal(pthread_create(&r->th, NULL, raw_main, r), 0);
	for (int i = 0; i < 250 && !f->held; i++)
		run_for(f, 0.02);
	assert_non_null(f->held);
	assert_false(https_req_gone(f->held));
	https_server_free(f->srv);
	f->srv = NULL;
	f->held = NULL;
	assert_int_equal(pthread_join(r->th, NULL), 0);
	assert_true(r->server_closed);
	if (r->resp_len)
		assert_status(r, 503);
	free(r);
	assert_int_equal(f->nreq, 1);
}

static void test_free_in_handler(void **state)
{
	struct fx *f = *state;
	struct https_server_cfg cfg;
	struct raw *r;

	fx_cfg(&cfg, f);
	fx_start(f, &cfg);
	r = raw_new(f, "GET /free HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_run(f, r);
	assert_null(f->srv);
	assert_true(r->server_closed);
	free(r);
	f->held = NULL;
	assert_int_equal(f->nreq, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_listen),
	    cmocka_unit_test(test_query_path),
	    cmocka_unit_test_setup_teardown(test_new_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_get_echo, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_big_and_keepalive, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deferred, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_peers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_limits_curl, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_raw_good, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_continue_and_bodies, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pipelined_behind_deferred, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ipv6_listen, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_max_conns, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_client_leaves, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_free_in_handler, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
