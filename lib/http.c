#include "lib/http.h"

#include <curl/curl.h>
#include <ev.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>

#define HTTP_BUFFER_SIZE (256 * 1024) /* fewer, larger reads and writes than curl's 16K */
#define HTTP_HUGE_ALIGN	 (2u << 20)   /* x86-64 huge page */
#define HTTP_HUGE_BODY	 (4u << 20)   /* answers this large get huge pages */

/* One socket that curl asked us to watch; owned by the client, freed on
 * CURL_POLL_REMOVE or with the client. */
struct http_sock {
	ev_io io;
	struct http_client *c;
	curl_socket_t fd;
	struct http_sock *prev, *next;
};

struct http_request {
	struct http_client *c;
	struct http_request *prev, *next;
	CURL *easy;
	struct curl_slist *headers;
	const char *up; /* request body (caller's) */
	size_t up_len, up_pos;
	size_t max_body;
	size_t cap; /* bytes allocated for resp.body */
	int nomem;
	http_done_cb cb;
	void *arg;
	struct http_resp resp;
	char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct http_request *reqs;
	struct http_sock *socks;
	unsigned active;
	int depth; /* nesting of http_drain: callbacks may free the client */
	int dying;
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;
static CURLcode http_global_rc;

static void http_global_init(void)
{
	/* Process-wide and not thread-safe in every libcurl build: once, and never
	 * undone, since other clients may live as long as the process. */
	http_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void http_sock_free(struct http_client *c, struct http_sock *s)
{
	ev_io_stop(c->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		c->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

static void http_client_destroy(struct http_client *c)
{
	ev_timer_stop(c->loop, &c->timer);
	/* curl may report sockets removed while it cleans up; free the rest after. */
	curl_multi_cleanup(c->multi);
	while (c->socks)
		http_sock_free(c, c->socks);
	free(c);
}

static void http_request_free(struct http_request *r)
{
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->headers);
	free(r->resp.body);
	free(r);
}

static void http_unlink(struct http_request *r)
{
	struct http_client *c = r->c;

	if (r->prev)
		r->prev->next = r->next;
	else
		c->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	c->active--;
	curl_multi_remove_handle(c->multi, r->easy);
}

static void http_finish(struct http_request *r, CURLcode res)
{
	struct http_resp *resp = &r->resp;

	http_unlink(r);
	if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &resp->status) != CURLE_OK)
		resp->status = 0;
	resp->curl_code = (int)res;
	resp->timed_out = res == CURLE_OPERATION_TIMEDOUT;
	if (r->nomem)
		snprintf(r->errbuf, sizeof(r->errbuf), "out of memory for the answer");
	else if (resp->too_large)
		snprintf(r->errbuf, sizeof(r->errbuf), "answer longer than %zu bytes", r->max_body);
	if (res == CURLE_OK)
		resp->error = "";
	else
		resp->error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
	if (resp->body)
		resp->body[resp->body_len] = '\0';
	r->cb(r->arg, resp);
	http_request_free(r);
}

/* Runs the callbacks of finished requests; they may start, cancel or free anything. */
static void http_drain(struct http_client *c)
{
	CURLMsg *m;
	int left;

	c->depth++;
	while (!c->dying && (m = curl_multi_info_read(c->multi, &left))) {
		char *priv = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
			continue;
		http_finish((struct http_request *)priv, m->data.result);
	}
	c->depth--;
	if (c->dying && c->depth == 0)
		http_client_destroy(c);
}

static void http_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct http_sock *s = (struct http_sock *)w;
	struct http_client *c = s->c;
	curl_socket_t fd = s->fd;
	int action = 0, running;

	(void)loop;
	if (revents & EV_READ)
		action |= CURL_CSELECT_IN;
	if (revents & EV_WRITE)
		action |= CURL_CSELECT_OUT;
	if (revents & EV_ERROR)
		action |= CURL_CSELECT_ERR;
	/* s may be freed inside this call (CURL_POLL_REMOVE): only c and fd from here.
	 * A failure here concerns curl's own bookkeeping; the transfers it hurts end
	 * with an error of their own, reported through http_drain. */
	(void)curl_multi_socket_action(c->multi, fd, action, &running);
	http_drain(c);
}

static void http_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct http_client *c = w->data;
	int running;

	(void)loop;
	(void)revents;
	(void)curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	http_drain(c);
}

static int http_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct http_client *c = userp;
	struct http_sock *s = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			curl_multi_assign(c->multi, fd, NULL);
			http_sock_free(c, s);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1; /* curl fails the transfer */
		s->c = c;
		s->fd = fd;
		s->next = c->socks;
		if (c->socks)
			c->socks->prev = s;
		c->socks = s;
		ev_init(&s->io, http_io_cb);
		curl_multi_assign(c->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	ev_io_stop(c->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	ev_io_start(c->loop, &s->io);
	return 0;
}

static int http_timer_set_cb(CURLM *multi, long ms, void *userp)
{
	struct http_client *c = userp;

	(void)multi;
	ev_timer_stop(c->loop, &c->timer);
	/* Never act from inside this callback: 0 ms means "on the next loop turn". */
	if (ms >= 0) {
		ev_timer_set(&c->timer, (double)ms / 1000.0, 0.0);
		ev_timer_start(c->loop, &c->timer);
	}
	return 0;
}

struct http_client *http_client_new(struct ev_loop *loop, unsigned max_conns, char *err,
				    size_t errlen)
{
	struct http_client *c;
	CURLMcode rc = CURLM_OK;

	pthread_once(&http_once, http_global_init);
	if (http_global_rc != CURLE_OK) {
		snprintf(err, errlen, "libcurl initialisation failed: %s",
			 curl_easy_strerror(http_global_rc));
		return NULL;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->multi = curl_multi_init())) {
		snprintf(err, errlen, "out of memory for the HTTP client");
		free(c);
		return NULL;
	}
	c->loop = loop;
	ev_init(&c->timer, http_timer_cb);
	c->timer.data = c;
	rc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, http_timer_set_cb);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	if (rc == CURLM_OK && max_conns)
		rc = curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_conns);
	if (rc != CURLM_OK) {
		snprintf(err, errlen, "libcurl multi setup failed: %s", curl_multi_strerror(rc));
		http_client_destroy(c);
		return NULL;
	}
	return c;
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	while (c->reqs) {
		struct http_request *r = c->reqs;

		http_unlink(r);
		http_request_free(r);
	}
	if (c->depth) {
		c->dying = 1;
		return;
	}
	http_client_destroy(c);
}

unsigned http_active(const struct http_client *c)
{
	return c->active;
}

char *http_resp_take_body(struct http_resp *resp, size_t *len)
{
	char *b = resp->body;

	*len = resp->body_len;
	resp->body = NULL;
	resp->body_len = 0;
	return b;
}

void http_cancel(struct http_request *r)
{
	if (!r)
		return;
	http_unlink(r);
	http_request_free(r);
}

/* A large answer goes into fresh memory that is faulted in page by page as it
 * arrives; on 4 KiB pages that costs more CPU than the transfer itself (measured: a
 * 256 MiB GET spent two thirds of its time in page faults). Transparent huge pages cut
 * the faults 512-fold; the buffer stays an ordinary malloc'd block for the caller. */
static int http_reserve_huge(struct http_request *r, size_t cap)
{
	void *b;

	if (posix_memalign(&b, HTTP_HUGE_ALIGN, cap) != 0)
		return -1;
	/* Only advice: without THP the buffer works the same, more slowly. */
	(void)madvise(b, cap & ~(size_t)(HTTP_HUGE_ALIGN - 1), MADV_HUGEPAGE);
	free(r->resp.body);
	r->resp.body = b;
	r->cap = cap;
	return 0;
}

/* Makes room for need bytes plus the NUL. */
static int http_reserve(struct http_request *r, size_t need)
{
	size_t cap = r->cap;
	char *b;

	if (need < r->cap)
		return 0;
	if (cap == 1 && r->resp.content_length > 0 && (uint64_t)r->resp.content_length < SIZE_MAX &&
	    (!r->max_body || (uint64_t)r->resp.content_length <= r->max_body))
		cap = (size_t)r->resp.content_length + 1;
	while (cap <= need)
		cap = cap < SIZE_MAX / 2 ? 2 * cap + 4096 : need + 1;
	if (r->resp.body_len == 0 && cap >= HTTP_HUGE_BODY)
		return http_reserve_huge(r, cap);
	b = realloc(r->resp.body, cap);
	if (!b)
		return -1;
	r->resp.body = b;
	r->cap = cap;
	return 0;
}

static size_t http_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct http_request *r = userp;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300) {
		/* Only the start of an error answer matters (an S3 <Error> document). */
		if (r->resp.body_len >= HTTP_ERROR_BODY_MAX)
			return n;
		if (n > HTTP_ERROR_BODY_MAX - r->resp.body_len) {
			size_t keep = HTTP_ERROR_BODY_MAX - r->resp.body_len;

			if (http_reserve(r, r->resp.body_len + keep) < 0) {
				r->nomem = 1;
				return 0;
			}
			memcpy(r->resp.body + r->resp.body_len, data, keep);
			r->resp.body_len += keep;
			return n;
		}
	} else if (r->max_body && n > r->max_body - r->resp.body_len) {
		r->resp.too_large = 1;
		return 0;
	}
	if (http_reserve(r, r->resp.body_len + n) < 0) {
		r->nomem = 1;
		return 0;
	}
	memcpy(r->resp.body + r->resp.body_len, data, n);
	r->resp.body_len += n;
	return n;
}

/* The value of header line "Name: value\r\n" when its name is name, else NULL. */
static const char *http_header_value(const char *line, size_t len, const char *name, size_t *vlen)
{
	size_t n = strlen(name);
	const char *v, *end = line + len;

	if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	v = line + n + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*vlen = (size_t)(end - v);
	return v;
}

static size_t http_header_cb(char *line, size_t size, size_t nmemb, void *userp)
{
	struct http_request *r = userp;
	size_t n = size * nmemb, vlen;
	const char *v;

	if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
		/* A new answer (after "100 Continue"): forget the previous one's headers. */
		r->resp.etag[0] = '\0';
		r->resp.content_length = -1;
	} else if ((v = http_header_value(line, n, "ETag", &vlen))) {
		/* An ETag we cannot hold whole is treated as absent, never cut. */
		if (vlen < sizeof(r->resp.etag)) {
			memcpy(r->resp.etag, v, vlen);
			r->resp.etag[vlen] = '\0';
		}
	} else if ((v = http_header_value(line, n, "Content-Length", &vlen))) {
		int64_t cl = 0;
		size_t i;

		for (i = 0; i < vlen && v[i] >= '0' && v[i] <= '9' && cl < INT64_MAX / 10; i++)
			cl = cl * 10 + (v[i] - '0');
		r->resp.content_length = (i == vlen && vlen) ? cl : -1;
	}
	return n;
}

static size_t http_read_cb(char *buf, size_t size, size_t nmemb, void *userp)
{
	struct http_request *r = userp;
	size_t n = size * nmemb;

	if (n > r->up_len - r->up_pos)
		n = r->up_len - r->up_pos;
	memcpy(buf, r->up + r->up_pos, n);
	r->up_pos += n;
	return n;
}

/* curl rewinds the body when it resends a request (a reused connection that turned
 * out closed); without this it would fail those instead. */
static int http_seek_cb(void *userp, curl_off_t off, int origin)
{
	struct http_request *r = userp;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->up_len)
		return CURL_SEEKFUNC_FAIL;
	r->up_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

#define HTTP_SET(rc, easy, opt, val)                                   \
	do {                                                           \
		if ((rc) == CURLE_OK)                                  \
			(rc) = curl_easy_setopt((easy), (opt), (val)); \
	} while (0)

static CURLcode http_set_method(struct http_request *r, const struct http_req *req)
{
	CURLcode rc = CURLE_OK;
	CURL *e = r->easy;
	int is_put = strcmp(req->method, "PUT") == 0;

	if (strcmp(req->method, "HEAD") == 0) {
		HTTP_SET(rc, e, CURLOPT_NOBODY, 1L);
	} else if (is_put || strcmp(req->method, "POST") == 0 || req->body) {
		r->up = req->body ? req->body : "";
		r->up_len = req->body ? req->body_len : 0;
		HTTP_SET(rc, e, CURLOPT_UPLOAD, 1L);
		HTTP_SET(rc, e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->up_len);
		HTTP_SET(rc, e, CURLOPT_READFUNCTION, http_read_cb);
		HTTP_SET(rc, e, CURLOPT_READDATA, r);
		HTTP_SET(rc, e, CURLOPT_SEEKFUNCTION, http_seek_cb);
		HTTP_SET(rc, e, CURLOPT_SEEKDATA, r);
		HTTP_SET(rc, e, CURLOPT_UPLOAD_BUFFERSIZE, (long)HTTP_BUFFER_SIZE);
		if (!is_put)
			HTTP_SET(rc, e, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (strcmp(req->method, "GET") != 0) {
		HTTP_SET(rc, e, CURLOPT_CUSTOMREQUEST, req->method);
	}
	return rc;
}

/* Seconds to whole milliseconds, rounded up so that a small timeout never becomes 0
 * (which libcurl reads as "none"). */
static long http_ms(double s)
{
	double ms = s * 1000.0;
	long out;

	if (ms >= (double)(LONG_MAX / 2))
		return LONG_MAX / 2;
	out = (long)ms;
	return out < ms ? out + 1 : out;
}

static CURLcode http_set_timeouts(CURL *e, const struct http_req *req)
{
	CURLcode rc = CURLE_OK;

	if (req->connect_timeout > 0)
		HTTP_SET(rc, e, CURLOPT_CONNECTTIMEOUT_MS, http_ms(req->connect_timeout));
	if (req->total_timeout > 0)
		HTTP_SET(rc, e, CURLOPT_TIMEOUT_MS, http_ms(req->total_timeout));
	if (req->stall_timeout > 0) {
		/* libcurl counts stalls in whole seconds. */
		HTTP_SET(rc, e, CURLOPT_LOW_SPEED_LIMIT, 1L);
		HTTP_SET(rc, e, CURLOPT_LOW_SPEED_TIME, (http_ms(req->stall_timeout) + 999) / 1000);
	}
	return rc;
}

static CURLcode http_set_options(struct http_request *r, const struct http_req *req)
{
	CURLcode rc = CURLE_OK;
	CURL *e = r->easy;

	HTTP_SET(rc, e, CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	HTTP_SET(rc, e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	HTTP_SET(rc, e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	HTTP_SET(rc, e, CURLOPT_NOSIGNAL, 1L);
	HTTP_SET(rc, e, CURLOPT_PRIVATE, (char *)r);
	HTTP_SET(rc, e, CURLOPT_ERRORBUFFER, r->errbuf);
	HTTP_SET(rc, e, CURLOPT_BUFFERSIZE, (long)HTTP_BUFFER_SIZE);
	HTTP_SET(rc, e, CURLOPT_WRITEFUNCTION, http_write_cb);
	HTTP_SET(rc, e, CURLOPT_WRITEDATA, r);
	HTTP_SET(rc, e, CURLOPT_HEADERFUNCTION, http_header_cb);
	HTTP_SET(rc, e, CURLOPT_HEADERDATA, r);
	if (r->headers)
		HTTP_SET(rc, e, CURLOPT_HTTPHEADER, r->headers);
	if (req->aws_sigv4)
		HTTP_SET(rc, e, CURLOPT_AWS_SIGV4, req->aws_sigv4);
	if (req->userpwd)
		HTTP_SET(rc, e, CURLOPT_USERPWD, req->userpwd);
	if (req->ca_file)
		HTTP_SET(rc, e, CURLOPT_CAINFO, req->ca_file);
	if (req->cert_file)
		HTTP_SET(rc, e, CURLOPT_SSLCERT, req->cert_file);
	if (req->key_file)
		HTTP_SET(rc, e, CURLOPT_SSLKEY, req->key_file);
	if (rc == CURLE_OK)
		rc = http_set_timeouts(e, req);
	if (rc == CURLE_OK)
		rc = http_set_method(r, req);
	return rc;
}

struct http_request *http_start(struct http_client *c, const struct http_req *req, http_done_cb cb,
				void *arg, char *err, size_t errlen)
{
	struct http_request *r = calloc(1, sizeof(*r));
	CURLcode rc;
	CURLMcode mrc;

	if (!r || !(r->easy = curl_easy_init()) || !(r->resp.body = malloc(1)))
		goto nomem;
	r->c = c;
	r->cb = cb;
	r->arg = arg;
	r->cap = 1;
	r->max_body = req->max_body;
	r->resp.content_length = -1;
	r->resp.error = "";
	for (const char *const *h = req->headers; h && *h; h++) {
		struct curl_slist *l = curl_slist_append(r->headers, *h);

		if (!l)
			goto nomem;
		r->headers = l;
	}
	rc = http_set_options(r, req);
	if (rc != CURLE_OK) {
		snprintf(err, errlen, "%s %s: libcurl refused an option: %s", req->method, req->url,
			 curl_easy_strerror(rc));
		goto fail;
	}
	mrc = curl_multi_add_handle(c->multi, r->easy);
	if (mrc != CURLM_OK) {
		snprintf(err, errlen, "%s %s: %s", req->method, req->url, curl_multi_strerror(mrc));
		goto fail;
	}
	r->next = c->reqs;
	if (c->reqs)
		c->reqs->prev = r;
	c->reqs = r;
	c->active++;
	return r;
nomem:
	snprintf(err, errlen, "%s %s: out of memory", req->method, req->url);
fail:
	if (r) {
		if (r->easy)
			curl_easy_cleanup(r->easy);
		curl_slist_free_all(r->headers);
		free(r->resp.body);
		free(r);
	}
	return NULL;
}
