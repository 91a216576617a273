#include "lib/https_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/httpreq.h"
#include "lib/log.h"

#define HTTPS_READ_CHUNK   (16 * 1024)
#define HTTPS_WAIT_BUF_MAX (64 * 1024) /* pipelined bytes held while a request is answered */
#define HTTPS_COALESCE_MAX (64 * 1024) /* smaller bodies go out in the head's buffer */
#define HTTPS_LINGER_S	   2.0
#define HTTPS_LINGER_MAX   (4 * 1024 * 1024)
#define HTTPS_ACCEPT_PAUSE 1.0 /* seconds without accepting after EMFILE and the like */
#define HTTPS_CN_MAX	   64  /* RFC 5280 ub-common-name */

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

static const char https_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum conn_state {
	C_HANDSHAKE, /* TLS handshake not finished */
	C_READ,	     /* reading (and parsing) a request */
	C_WAIT,	     /* the request is with the handler */
	C_WRITE,     /* sending an answer */
	C_LINGER,    /* answered and closing: drain what the client still sends */
};

struct conn;

/* A request with the handler: the public part it sees, what was read, and the server's
 * bookkeeping. Owned by the server (pending list) from dispatch until https_respond. */
struct srv_req {
	struct https_req pub;
	struct https_server *s;
	struct conn *c;		     /* NULL once the client has gone */
	struct srv_req *prev, *next; /* s->pending, once dispatched */
	int dispatched;
	struct httpreq *msg; /* owned */
	char *cn, *remote;
};

struct conn {
	struct https_server *s;
	struct conn *prev, *next;
	int fd;
	SSL *ssl;
	ev_io io;
	ev_timer timer;
	int events; /* what io watches now */
	int want;   /* what the blocked SSL calls of this turn wait for */
	enum conn_state state;
	char remote[INET6_ADDRSTRLEN + 16];
	char *cn;		  /* after the handshake */
	int refused;		  /* CN not authorized: 403 to the first request */
	int broken;		  /* out of memory in https_respond: close on the next event */
	struct httpreq_reader rd; /* the request being read */
	char *in;		  /* received, not yet parsed: in[in_off..in_len) */
	size_t in_off, in_len, in_cap;
	struct srv_req *req; /* with the handler (C_WAIT) */
	int keep_alive;
	size_t cont_off; /* bytes of "100 Continue" sent; sizeof means none due */
	char *out;	 /* head of the answer (maybe with a small body) */
	size_t out_len, out_off;
	char *body; /* large body of the answer, sent after out */
	size_t body_len, body_off;
	int close_after;
	size_t lingered;
};

struct bucket {
	struct bucket *next;
	char *cn;
	double tokens;
	ev_tstamp last;
};

struct https_server {
	struct ev_loop *loop;
	SSL_CTX *ctx;
	int fd;
	int port;
	ev_io accept_io;
	ev_timer accept_pause;
	int (*authorize)(void *ctx, const char *cn);
	void (*handler)(void *ctx, struct https_req *req);
	void *hctx;
	size_t max_header, max_url, max_body;
	double idle_timeout, request_timeout, handshake_timeout;
	unsigned max_conns;
	double rate, burst;
	struct conn *conns;
	unsigned nconns;
	struct srv_req *pending;
	struct bucket *buckets;
	ev_tstamp full_logged; /* when "too many connections" was last logged */
	int depth;	       /* nesting of handler calls: the handler may free the server */
	int dying;
};

static void conn_step(struct conn *c);

/* ---- small helpers ------------------------------------------------------------------ */

/* The first error of OpenSSL's queue, which names the cause (later ones only say which
 * call failed); empties the queue, which curl on this thread shares. */
static const char *ssl_errstr(char *buf, size_t len)
{
	unsigned long e = ERR_get_error(), first = e;
	const char *r;

	while (e)
		e = ERR_get_error();
	if (!first)
		return "unknown TLS error";
	r = ERR_reason_error_string(first);
	if (r)
		snprintf(buf, len, "%s", r);
	else
		ERR_error_string_n(first, buf, len);
	return buf;
}

static void sockaddr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

		if (inet_ntop(AF_INET, &in->sin_addr, a, sizeof(a)))
			snprintf(buf, len, "%s:%u", a, ntohs(in->sin_port));
		else
			snprintf(buf, len, "?");
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

		/* A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: print them
		 * as the admin knows them. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		    inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], a, sizeof(a)))
			snprintf(buf, len, "%s:%u", a, ntohs(in6->sin6_port));
		else if (inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof(a)))
			snprintf(buf, len, "[%s]:%u", a, ntohs(in6->sin6_port));
		else
			snprintf(buf, len, "?");
	} else {
		snprintf(buf, len, "?");
	}
}

int https_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
		       size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *h = s;
	size_t hlen;
	char *end;
	unsigned long port;

	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (!rb || rb[1] != ':')
			goto bad;
		h = s + 1;
		hlen = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			goto bad;
		hlen = (size_t)(colon - s);
	}
	if (hlen == 0 || hlen >= sizeof(host))
		goto bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (colon[1] < '0' || colon[1] > '9')
		goto bad;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port > 65535)
		goto bad;
	if (s[0] == '[') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			goto bad;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
			goto bad;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*in);
	}
	return 0;
bad:
	snprintf(err, errlen,
		 "listen \"%s\": expected ADDR:PORT with a numeric IPv4 address or an IPv6 "
		 "address in brackets, and a port 0-65535",
		 s);
	return -1;
}

/* ---- requests ---------------------------------------------------------------------- */

static void req_free(struct srv_req *q)
{
	if (!q)
		return;
	httpreq_free(q->msg);
	free(q->cn);
	free(q->remote);
	free(q);
}

static void req_unlink(struct srv_req *q)
{
	struct https_server *s = q->s;

	if (!q->dispatched)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		s->pending = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->dispatched = 0;
}

const char *https_req_header(const struct https_req *r, const char *name)
{
	return httpreq_header(container_of(r, struct srv_req, pub)->msg, name);
}

int https_req_gone(const struct https_req *r)
{
	return container_of(r, struct srv_req, pub)->c == NULL;
}

/* ---- connections: life and death ---------------------------------------------------- */

static const char *conn_who(const struct conn *c, char *buf, size_t len)
{
	if (c->cn)
		snprintf(buf, len, "peer CN=%s from %s", c->cn, c->remote);
	else
		snprintf(buf, len, "client %s", c->remote);
	return buf;
}

static void conn_timer_set(struct conn *c, double secs)
{
	ev_timer_stop(c->s->loop, &c->timer);
	ev_timer_set(&c->timer, secs, 0.0);
	ev_timer_start(c->s->loop, &c->timer);
}

/* Frees c; a request with the handler stays, marked gone. */
static void conn_close(struct conn *c)
{
	struct https_server *s = c->s;

	ev_io_stop(s->loop, &c->io);
	ev_timer_stop(s->loop, &c->timer);
	if (c->ssl) {
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	if (close(c->fd) < 0)
		log_debug("closing the socket of client %s: %s", c->remote, strerror(errno));
	if (c->req)
		c->req->c = NULL;
	httpreq_reader_clear(&c->rd);
	free(c->in);
	free(c->out);
	free(c->body);
	free(c->cn);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	free(c);
}

static void conn_watch(struct conn *c, int events)
{
	if (events == c->events && (!events || ev_is_active(&c->io)))
		return;
	ev_io_stop(c->s->loop, &c->io);
	c->events = events;
	if (events) {
		ev_io_set(&c->io, c->fd, events);
		ev_io_start(c->s->loop, &c->io);
	}
}

/* What the connection waits for now that its step is blocked. */
static void conn_arm(struct conn *c)
{
	int ev = c->want;

	switch (c->state) {
	case C_WAIT:
		/* A full buffer stops reading until the answer is out: back-pressure on a
		 * pipelining client. */
		if (c->in_len - c->in_off >= HTTPS_WAIT_BUF_MAX)
			ev = 0;
		break;
	case C_LINGER:
		ev = EV_READ;
		break;
	default:
		break;
	}
	conn_watch(c, ev);
}

static void conn_timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = container_of(w, struct conn, timer);
	char who[256];

	(void)loop;
	(void)revents;
	conn_who(c, who, sizeof(who));
	switch (c->state) {
	case C_HANDSHAKE:
		log_info("%s: no TLS handshake within %.1fs, closing", who,
			 c->s->handshake_timeout);
		break;
	case C_READ:
		if (c->rd.in_request)
			log_info("%s: request not received within %.1fs, closing", who,
				 c->s->request_timeout);
		else
			log_debug("%s: idle for %.1fs, closing", who, c->s->idle_timeout);
		break;
	case C_WRITE:
		log_info("%s: answer stalled for %.1fs, closing", who, c->s->idle_timeout);
		break;
	default:
		break;
	}
	conn_close(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = container_of(w, struct conn, io);

	(void)loop;
	(void)revents;
	if (c->broken) {
		char who[256];

		log_warnx("%s: out of memory for an answer, closing",
			  conn_who(c, who, sizeof(who)));
		conn_close(c);
		return;
	}
	conn_step(c);
}

static void conn_new(struct https_server *s, int fd, const struct sockaddr_storage *ss)
{
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c) {
		log_warnx("out of memory for a new connection");
		if (close(fd) < 0)
			log_debug("closing a refused socket: %s", strerror(errno));
		return;
	}
	c->s = s;
	c->fd = fd;
	c->cont_off = sizeof(https_continue);
	sockaddr_str(ss, c->remote, sizeof(c->remote));
	ev_io_init(&c->io, conn_io_cb, fd, 0);
	ev_timer_init(&c->timer, conn_timeout_cb, 0.0, 0.0);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	/* Answers are written whole and then we wait: Nagle would only add a delay. */
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug("client %s: TCP_NODELAY: %s", c->remote, strerror(errno));
	ERR_clear_error();
	c->ssl = SSL_new(s->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
		char e[256];

		log_warnx("client %s: cannot set up TLS: %s", c->remote, ssl_errstr(e, sizeof(e)));
		conn_close(c);
		return;
	}
	SSL_set_accept_state(c->ssl);
	httpreq_reader_init(&c->rd,
			    &(struct httpreq_limits){s->max_header, s->max_url, s->max_body});
	c->state = C_HANDSHAKE;
	conn_timer_set(c, s->handshake_timeout);
	conn_step(c);
}

/* ---- TLS ---------------------------------------------------------------------------- */

/* Why an SSL call failed, for the log. */
static const char *ssl_failure(struct conn *c, int ret, int e, char *buf, size_t len)
{
	long vr;

	switch (e) {
	case SSL_ERROR_ZERO_RETURN:
		return "connection closed";
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error())
			return ssl_errstr(buf, len);
		if (ret == 0 || errno == 0)
			return "connection closed";
		snprintf(buf, len, "%s", strerror(errno));
		return buf;
	case SSL_ERROR_SSL:
		vr = SSL_get_verify_result(c->ssl);
		if (vr != X509_V_OK) {
			ERR_clear_error();
			snprintf(buf, len, "certificate refused: %s",
				 X509_verify_cert_error_string(vr));
			return buf;
		}
		return ssl_errstr(buf, len);
	default:
		ERR_clear_error();
		snprintf(buf, len, "TLS error %d", e);
		return buf;
	}
}

/* The subject CN of cert into cn; -1 when there is none, more than one, or one that is
 * not printable ASCII (it goes into logs and to authorize). */
static int cert_cn(X509 *cert, char *cn, size_t cnlen)
{
	X509_NAME *name = X509_get_subject_name(cert);
	int i, n;
	unsigned char *u = NULL;
	X509_NAME_ENTRY *ent;

	if (!name)
		return -1;
	i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
	if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
		return -1;
	ent = X509_NAME_get_entry(name, i);
	if (!ent)
		return -1;
	n = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(ent));
	if (n <= 0 || (size_t)n >= cnlen) {
		OPENSSL_free(u);
		return -1;
	}
	for (int k = 0; k < n; k++) {
		if (u[k] <= 0x20 || u[k] >= 0x7f) {
			OPENSSL_free(u);
			return -1;
		}
	}
	memcpy(cn, u, (size_t)n);
	cn[n] = '\0';
	OPENSSL_free(u);
	return 0;
}

/* After the handshake: who is it, and may it talk to us? */
static int conn_identify(struct conn *c)
{
	X509 *cert = SSL_get0_peer_certificate(c->ssl);
	char cn[HTTPS_CN_MAX + 1];
	long vr = SSL_get_verify_result(c->ssl);

	if (!cert || vr != X509_V_OK) {
		/* SSL_VERIFY_FAIL_IF_NO_PEER_CERT makes this unreachable; be sure. */
		log_warnx("client %s: no verified certificate after the handshake, closing",
			  c->remote);
		conn_close(c);
		return -1;
	}
	if (cert_cn(cert, cn, sizeof(cn)) < 0) {
		log_warnx("refused client %s: certificate without a single printable CN",
			  c->remote);
		c->refused = 1;
		snprintf(cn, sizeof(cn), "?");
	}
	c->cn = strdup(cn);
	if (!c->cn) {
		log_warnx("client %s: out of memory", c->remote);
		conn_close(c);
		return -1;
	}
	if (!c->refused && c->s->authorize(c->s->hctx, cn) != 0) {
		log_warnx("refused peer CN=%s from %s: not a configured peer", cn, c->remote);
		c->refused = 1;
	}
	return 0;
}

static int conn_handshake(struct conn *c)
{
	int r, e;
	char buf[256];

	ERR_clear_error();
	r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		if (conn_identify(c) < 0)
			return -1;
		log_debug("peer CN=%s from %s: connected", c->cn, c->remote);
		c->state = C_READ;
		conn_timer_set(c, c->s->idle_timeout);
		return 1;
	}
	e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		c->want |= EV_READ;
		return 0;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		c->want |= EV_WRITE;
		return 0;
	}
	log_info("client %s: TLS handshake failed: %s", c->remote,
		 ssl_failure(c, r, e, buf, sizeof(buf)));
	conn_close(c);
	return -1;
}

/* ---- reading ------------------------------------------------------------------------ */

enum { FILL_DATA = 1, FILL_BLOCKED = 0, FILL_EOF = -1, FILL_ERROR = -2 };

/* One SSL_read into the input buffer. On FILL_ERROR, why is set. */
static int conn_fill(struct conn *c, const char **why, char *buf, size_t len)
{
	int n, e;

	if (c->in_off == c->in_len) {
		c->in_off = c->in_len = 0;
	} else if (c->in_off && c->in_cap - c->in_len < HTTPS_READ_CHUNK) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_cap - c->in_len < HTTPS_READ_CHUNK) {
		char *b = realloc(c->in, c->in_len + HTTPS_READ_CHUNK);

		if (!b) {
			*why = "out of memory";
			return FILL_ERROR;
		}
		c->in = b;
		c->in_cap = c->in_len + HTTPS_READ_CHUNK;
	}
	ERR_clear_error();
	n = SSL_read(c->ssl, c->in + c->in_len, (int)(c->in_cap - c->in_len));
	if (n > 0) {
		c->in_len += (size_t)n;
		return FILL_DATA;
	}
	e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_WANT_READ) {
		c->want |= EV_READ;
		return FILL_BLOCKED;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		c->want |= EV_WRITE;
		return FILL_BLOCKED;
	}
	if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && !ERR_peek_error() &&
					   (n == 0 || errno == 0 || errno == ECONNRESET))) {
		ERR_clear_error();
		return FILL_EOF;
	}
	*why = ssl_failure(c, n, e, buf, len);
	return FILL_ERROR;
}

/* Builds and queues an answer on c; takes body. -1 when out of memory (body freed). */
static int conn_queue_answer(struct conn *c, int status, const char *ctype,
			     const char *const *headers, char *body, size_t len, int head_only,
			     int close_after);

/* Answers a request the server refuses itself, and closes after. */
static int conn_refuse(struct conn *c, int status, const char *why)
{
	static const char *const allow[] = {"Allow: GET, HEAD, POST", NULL};
	char who[256], *body;
	size_t n = strlen(why);
	int head = httpreq_reader_head(&c->rd);

	log_info("%s: %d %s", conn_who(c, who, sizeof(who)), status, why);
	httpreq_reader_clear(&c->rd);
	body = malloc(n + 2);
	if (!body) {
		conn_close(c);
		return -1;
	}
	memcpy(body, why, n);
	memcpy(body + n, "\n", 2);
	if (conn_queue_answer(c, status, "text/plain", status == 405 ? allow : NULL, body, n + 1,
			      head, 1) < 0) {
		log_warnx("%s: out of memory for an answer, closing", who);
		conn_close(c);
		return -1;
	}
	return 1;
}

static int bucket_take(struct https_server *s, const char *cn);

/* A request has arrived whole (msg, which it takes): to the handler, unless over the
 * rate. */
static int conn_dispatch(struct conn *c, struct httpreq *msg)
{
	struct https_server *s = c->s;
	struct srv_req *q;

	if (!bucket_take(s, c->cn)) {
		static const char *const retry[] = {"Retry-After: 1", NULL};
		char who[256];
		char *text = strdup("too many requests\n");
		int head = msg->head;

		log_info("%s: %s %s: 429 over the request rate", conn_who(c, who, sizeof(who)),
			 msg->method, msg->path);
		httpreq_free(msg);
		/* The request was read whole: the connection can go on. */
		if (!text || conn_queue_answer(c, 429, "text/plain", retry, text, strlen(text),
					       head, !c->keep_alive) < 0) {
			conn_close(c);
			return -1;
		}
		return 1;
	}
	q = calloc(1, sizeof(*q));
	if (q) {
		q->msg = msg;
		q->cn = strdup(c->cn);
		q->remote = strdup(c->remote);
	} else {
		httpreq_free(msg);
	}
	if (!q || !q->cn || !q->remote) {
		log_warnx("peer CN=%s from %s: out of memory for a request", c->cn, c->remote);
		req_free(q);
		conn_close(c);
		return -1;
	}
	q->s = s;
	q->c = c;
	q->pub.method = msg->method;
	q->pub.path = msg->path;
	q->pub.query = msg->query;
	q->pub.body = msg->body ? msg->body : "";
	q->pub.body_len = msg->body_len;
	q->pub.peer_cn = q->cn;
	q->pub.remote = q->remote;
	q->dispatched = 1;
	q->next = s->pending;
	if (s->pending)
		s->pending->prev = q;
	s->pending = q;
	c->req = q;
	c->state = C_WAIT;
	ev_timer_stop(s->loop, &c->timer);
	s->depth++;
	s->handler(s->hctx, &q->pub);
	s->depth--;
	if (s->dying && s->depth == 0) {
		https_server_free(s);
		return -1;
	}
	return 1;
}

/* Parses what is buffered; stops after one whole request. */
static int conn_parse(struct conn *c)
{
	while (c->state == C_READ && c->in_off < c->in_len) {
		int began = c->rd.in_request, status = 0;
		const char *why = NULL;
		enum httpreq_result r;
		size_t n;

		r = httpreq_feed(&c->rd, c->in + c->in_off, c->in_len - c->in_off, &n, &status,
				 &why);
		c->in_off += n;
		/* From its first byte, a request has request_timeout to arrive whole: a client
		 * that trickles it (slowloris) is cut off however steadily it trickles. */
		if (!began && c->rd.in_request)
			conn_timer_set(c, c->s->request_timeout);
		if (c->rd.continue_due) {
			c->rd.continue_due = 0;
			c->cont_off = 0;
		}
		if (r == HTTPREQ_NOMEM) {
			char who[256];

			log_warnx("%s: out of memory for a request, closing",
				  conn_who(c, who, sizeof(who)));
			conn_close(c);
			return -1;
		}
		if (c->refused && c->rd.headers_done)
			return conn_refuse(c, 403, "not a configured peer");
		if (r == HTTPREQ_REFUSE)
			return conn_refuse(c, status, why);
		if (r == HTTPREQ_DONE) {
			struct httpreq *msg = httpreq_take(&c->rd);

			if (c->cont_off == 0) /* the body is here already: "100 Continue" is moot */
				c->cont_off = sizeof(https_continue);
			c->keep_alive = msg->keep_alive;
			if (c->in_off == c->in_len)
				c->in_off = c->in_len = 0;
			return conn_dispatch(c, msg);
		}
	}
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
	return 1;
}

static int conn_write_continue(struct conn *c);

static int conn_read(struct conn *c)
{
	for (;;) {
		const char *why = NULL;
		char buf[256], who[256];
		int r;

		if (conn_parse(c) < 0)
			return -1;
		if (c->state != C_READ)
			return 1;
		if (c->cont_off < sizeof(https_continue) - 1 && conn_write_continue(c) < 0)
			return -1;
		r = conn_fill(c, &why, buf, sizeof(buf));
		if (r == FILL_DATA)
			continue;
		if (r == FILL_BLOCKED)
			return 0;
		conn_who(c, who, sizeof(who));
		if (r == FILL_ERROR)
			log_info("%s: %s, closing", who, why);
		else if (c->rd.in_request)
			log_info("%s: closed the connection mid-request", who);
		else
			log_debug("%s: closed the connection", who);
		conn_close(c);
		return -1;
	}
}

/* While the handler has the request: keep reading to learn that the client left, and
 * hold what it pipelines. */
static int conn_wait(struct conn *c)
{
	while (c->in_len - c->in_off < HTTPS_WAIT_BUF_MAX) {
		const char *why = NULL;
		char buf[256], who[256];
		int r = conn_fill(c, &why, buf, sizeof(buf));

		if (r == FILL_DATA)
			continue;
		if (r == FILL_BLOCKED)
			return 0;
		log_debug("%s: left while its request was pending (%s)",
			  conn_who(c, who, sizeof(who)), r == FILL_ERROR ? why : "closed");
		conn_close(c);
		return -1;
	}
	return 0;
}

/* ---- writing ------------------------------------------------------------------------ */

struct sbuf {
	char *p;
	size_t len, cap;
	int nomem;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->nomem)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->nomem = 1;
		return;
	}
	if ((size_t)n >= b->cap - b->len) {
		size_t cap = b->cap * 2 + (size_t)n + 1;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->nomem = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0 || (size_t)n >= b->cap - b->len) {
			b->nomem = 1;
			return;
		}
	}
	b->len += (size_t)n;
}

/* s for a log line: at most len - 1 bytes, control bytes shown as '?'. */
static const char *printable(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] && i + 1 < len; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/* A handler's header line must be "Name: value" on one line and must not redo framing
 * the server owns. */
static int header_line_ok(const char *h)
{
	static const char *const owned[] = {"Content-Length", "Transfer-Encoding", "Connection",
					    NULL};
	const char *colon = strchr(h, ':');

	if (!colon || colon == h || strpbrk(h, "\r\n"))
		return 0;
	for (const char *p = h; p < colon; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return 0;
	for (const char *const *o = owned; *o; o++)
		if ((size_t)(colon - h) == strlen(*o) && strncasecmp(h, *o, strlen(*o)) == 0)
			return 0;
	return 1;
}

static int conn_queue_answer(struct conn *c, int status, const char *ctype,
			     const char *const *headers, char *body, size_t len, int head_only,
			     int close_after)
{
	struct sbuf b = {0};
	char shown[64];
	int nobody = status == 204 || status == 304;
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	b.cap = 512;
	b.p = malloc(b.cap);
	if (!b.p) {
		free(body);
		return -1;
	}
	b.p[0] = '\0';
	sb_printf(&b, "HTTP/1.1 %d %s\r\n", status, http_status_str((enum http_status)status));
	if (gmtime_r(&now, &tm) && strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm))
		sb_printf(&b, "Date: %s\r\n", date);
	if (ctype && !strpbrk(ctype, "\r\n"))
		sb_printf(&b, "Content-Type: %s\r\n", ctype);
	if (!nobody)
		sb_printf(&b, "Content-Length: %zu\r\n", len);
	if (close_after)
		sb_printf(&b, "Connection: close\r\n");
	for (const char *const *h = headers; h && *h; h++) {
		if (header_line_ok(*h))
			sb_printf(&b, "%s\r\n", *h);
		else
			log_warnx("answer to %s: header line dropped (not \"Name: value\" or "
				  "set by the server): %s",
				  c->remote, printable(*h, shown, sizeof(shown)));
	}
	sb_printf(&b, "\r\n");
	if (head_only || nobody || !body) {
		free(body);
		body = NULL;
		len = 0;
	}
	if (body && len <= HTTPS_COALESCE_MAX && !b.nomem) {
		/* One buffer, one TLS record for a small answer. */
		char *p = realloc(b.p, b.len + len);

		if (!p) {
			b.nomem = 1;
		} else {
			b.p = p;
			memcpy(b.p + b.len, body, len);
			b.len += len;
			free(body);
			body = NULL;
			len = 0;
		}
	}
	if (b.nomem) {
		free(b.p);
		free(body);
		return -1;
	}
	free(c->out);
	free(c->body);
	c->out = b.p;
	c->out_len = b.len;
	c->out_off = 0;
	c->body = body;
	c->body_len = len;
	c->body_off = 0;
	c->close_after = close_after;
	c->state = C_WRITE;
	conn_timer_set(c, c->s->idle_timeout);
	return 0;
}

/* One SSL_write of p[0..len); > 0 bytes written, 0 blocked, -1 closed c. */
static int conn_ssl_write(struct conn *c, const char *p, size_t len)
{
	int n, e;
	char buf[256], who[256];

	ERR_clear_error();
	n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
	if (n > 0)
		return n;
	e = SSL_get_error(c->ssl, n);
	if (e == SSL_ERROR_WANT_WRITE) {
		c->want |= EV_WRITE;
		return 0;
	}
	if (e == SSL_ERROR_WANT_READ) {
		c->want |= EV_READ;
		return 0;
	}
	log_info("%s: sending the answer failed: %s", conn_who(c, who, sizeof(who)),
		 ssl_failure(c, n, e, buf, sizeof(buf)));
	conn_close(c);
	return -1;
}

static int conn_write_continue(struct conn *c)
{
	while (c->cont_off < sizeof(https_continue) - 1) {
		int n = conn_ssl_write(c, https_continue + c->cont_off,
				       sizeof(https_continue) - 1 - c->cont_off);

		if (n <= 0)
			return n;
		c->cont_off += (size_t)n;
	}
	return 0;
}

static int conn_linger_start(struct conn *c)
{
	int r;

	/* close_notify, then FIN; the client's remaining bytes are read and dropped for
	 * a moment, because closing with unread data sends a reset that can destroy our
	 * answer before the client has read it (a 413 to a body still in flight). */
	ERR_clear_error();
	r = SSL_shutdown(c->ssl);
	if (r < 0)
		log_debug("client %s: TLS shutdown incomplete", c->remote);
	ERR_clear_error();
	if (shutdown(c->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		log_debug("client %s: shutdown: %s", c->remote, strerror(errno));
	c->state = C_LINGER;
	c->lingered = 0;
	conn_timer_set(c, HTTPS_LINGER_S);
	return 1;
}

static int conn_linger(struct conn *c)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(c->fd, buf, sizeof(buf));

		if (n > 0) {
			c->lingered += (size_t)n;
			if (c->lingered <= HTTPS_LINGER_MAX)
				continue;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			return 0;
		} else if (n < 0 && errno != ECONNRESET) {
			log_debug("client %s: read while closing: %s", c->remote, strerror(errno));
		}
		conn_close(c);
		return -1;
	}
}

static int conn_write(struct conn *c)
{
	int progressed = 0;

	if (c->cont_off < sizeof(https_continue) - 1) {
		/* A "100 Continue" already begun goes out whole before the answer. */
		if (conn_write_continue(c) < 0)
			return -1;
		if (c->cont_off < sizeof(https_continue) - 1)
			return 0;
	}
	while (c->out_off < c->out_len || c->body_off < c->body_len) {
		int n;

		if (c->out_off < c->out_len) {
			n = conn_ssl_write(c, c->out + c->out_off, c->out_len - c->out_off);
			if (n > 0)
				c->out_off += (size_t)n;
		} else {
			n = conn_ssl_write(c, c->body + c->body_off, c->body_len - c->body_off);
			if (n > 0)
				c->body_off += (size_t)n;
		}
		if (n < 0)
			return -1;
		if (n == 0) {
			if (progressed) /* a stall is idle_timeout without progress */
				conn_timer_set(c, c->s->idle_timeout);
			return 0;
		}
		progressed = 1;
	}
	free(c->out);
	free(c->body);
	c->out = c->body = NULL;
	c->out_len = c->out_off = c->body_len = c->body_off = 0;
	c->cont_off = sizeof(https_continue);
	if (c->close_after)
		return conn_linger_start(c);
	c->state = C_READ;
	conn_timer_set(c, c->s->idle_timeout);
	return 1;
}

/* Runs c's state machine until it has to wait, then sets what it waits for. */
static void conn_step(struct conn *c)
{
	c->want = 0;
	for (;;) {
		int r = 0;

		switch (c->state) {
		case C_HANDSHAKE:
			r = conn_handshake(c);
			break;
		case C_READ:
			r = conn_read(c);
			break;
		case C_WAIT:
			r = conn_wait(c);
			break;
		case C_WRITE:
			r = conn_write(c);
			break;
		case C_LINGER:
			r = conn_linger(c);
			break;
		}
		if (r < 0)
			return;
		if (r == 0)
			break;
		c->want = 0;
	}
	conn_arm(c);
}

void https_respond(struct https_req *r, int status, const char *content_type,
		   const char *const *headers, char *body, size_t len)
{
	struct srv_req *q;
	struct conn *c;

	if (!r) {
		free(body);
		return;
	}
	q = container_of(r, struct srv_req, pub);
	req_unlink(q);
	c = q->c;
	if (!c) {
		free(body);
		req_free(q);
		return;
	}
	c->req = NULL;
	if (status < 200 || status > 599) {
		log_warnx("answer to %s %s from %s: status %d is not an answer, sending 500",
			  r->method, r->path, r->remote, status);
		status = 500;
	}
	if (!body && len && !q->msg->head) {
		log_warnx("answer to %s %s from %s: no body for Content-Length %zu, sending 500",
			  r->method, r->path, r->remote, len);
		status = 500;
		len = 0;
	}
	/* Never closes c here: the handler may be running inside c's own step. */
	if (conn_queue_answer(c, status, content_type, headers, body, len, q->msg->head,
			      !c->keep_alive) < 0) {
		c->broken = 1;
		ev_feed_event(c->s->loop, &c->io, EV_WRITE);
	} else {
		/* Written from c's next event; the socket is writable at once. */
		c->want = 0;
		conn_watch(c, EV_WRITE);
	}
	req_free(q);
}

/* ---- rate limit --------------------------------------------------------------------- */

/* 1 when cn may make one more request now. */
static int bucket_take(struct https_server *s, const char *cn)
{
	ev_tstamp now = ev_now(s->loop);
	struct bucket *b, **pp;

	if (s->rate <= 0)
		return 1;
	for (b = s->buckets; b; b = b->next)
		if (strcmp(b->cn, cn) == 0)
			break;
	if (!b) {
		/* A full bucket is the same as none: drop those before adding one, so the
		 * list holds only the CNs busy right now. */
		for (pp = &s->buckets; *pp;) {
			struct bucket *o = *pp;

			if (o->tokens + (now - o->last) * s->rate >= s->burst) {
				*pp = o->next;
				free(o->cn);
				free(o);
			} else {
				pp = &o->next;
			}
		}
		b = calloc(1, sizeof(*b));
		if (!b || !(b->cn = strdup(cn))) {
			free(b);
			return 1; /* out of memory is no reason to refuse a peer */
		}
		b->tokens = s->burst;
		b->last = now;
		b->next = s->buckets;
		s->buckets = b;
	}
	b->tokens += (now - b->last) * s->rate;
	if (b->tokens > s->burst)
		b->tokens = s->burst;
	b->last = now;
	if (b->tokens < 1.0)
		return 0;
	b->tokens -= 1.0;
	return 1;
}

/* ---- listening ---------------------------------------------------------------------- */

static void accept_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct https_server *s = container_of(w, struct https_server, accept_pause);

	(void)revents;
	ev_io_start(loop, &s->accept_io);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct https_server *s = container_of(w, struct https_server, accept_io);

	(void)revents;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			/* Out of descriptors or memory: the pending connection would wake us
			 * again at once; give the system a moment. */
			log_warn("peer server: accept");
			ev_io_stop(loop, &s->accept_io);
			ev_timer_set(&s->accept_pause, HTTPS_ACCEPT_PAUSE, 0.0);
			ev_timer_start(loop, &s->accept_pause);
			return;
		}
		if (s->nconns >= s->max_conns) {
			char who[INET6_ADDRSTRLEN + 16];

			/* Once a second at most: a flood of connections is no reason for a
			 * flood of log lines. */
			if (ev_now(loop) - s->full_logged >= 1.0) {
				sockaddr_str(&ss, who, sizeof(who));
				log_warnx("peer server: client %s refused, already %u connections",
					  who, s->nconns);
				s->full_logged = ev_now(loop);
			}
			if (close(fd) < 0)
				log_debug("closing a refused socket: %s", strerror(errno));
			continue;
		}
		conn_new(s, fd, &ss);
	}
}

static int server_listen(struct https_server *s, const char *listen_s, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	if (https_parse_listen(listen_s, &ss, &len, err, errlen) < 0)
		return -1;
	s->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", listen_s, strerror(errno));
		return -1;
	}
	if (setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		snprintf(err, errlen, "listen %s: SO_REUSEADDR: %s", listen_s, strerror(errno));
		return -1;
	}
	if (bind(s->fd, (struct sockaddr *)&ss, len) < 0) {
		snprintf(err, errlen, "listen %s: bind: %s", listen_s, strerror(errno));
		return -1;
	}
	if (listen(s->fd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "listen %s: listen: %s", listen_s, strerror(errno));
		return -1;
	}
	len = sizeof(ss);
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) < 0) {
		snprintf(err, errlen, "listen %s: getsockname: %s", listen_s, strerror(errno));
		return -1;
	}
	s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						 : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

static int server_tls(struct https_server *s, const struct https_server_cfg *cfg, char *err,
		      size_t errlen)
{
	static const unsigned char sid_ctx[] = "hsmd-peer";
	STACK_OF(X509_NAME) * cas;
	char e[256];

	ERR_clear_error();
	s->ctx = SSL_CTX_new(TLS_server_method());
	if (!s->ctx) {
		snprintf(err, errlen, "TLS context: %s", ssl_errstr(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_set_min_proto_version(s->ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(s->ctx, TLS1_3_VERSION) != 1) {
		snprintf(err, errlen, "TLS context: cannot require TLS 1.3: %s",
			 ssl_errstr(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(s->ctx, cfg->cert_file) != 1) {
		snprintf(err, errlen, "certificate %s: %s", cfg->cert_file,
			 ssl_errstr(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(s->ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
			ERR_clear_error();
			snprintf(err, errlen, "key %s does not match certificate %s", cfg->key_file,
				 cfg->cert_file);
		} else {
			snprintf(err, errlen, "key %s: %s", cfg->key_file,
				 ssl_errstr(e, sizeof(e)));
		}
		return -1;
	}
	if (SSL_CTX_check_private_key(s->ctx) != 1) {
		snprintf(err, errlen, "key %s does not match certificate %s: %s", cfg->key_file,
			 cfg->cert_file, ssl_errstr(e, sizeof(e)));
		return -1;
	}
	if (SSL_CTX_load_verify_locations(s->ctx, cfg->ca_file, NULL) != 1) {
		snprintf(err, errlen, "CA %s: %s", cfg->ca_file, ssl_errstr(e, sizeof(e)));
		return -1;
	}
	cas = SSL_load_client_CA_file(cfg->ca_file);
	if (!cas) {
		snprintf(err, errlen, "CA %s: no certificate names: %s", cfg->ca_file,
			 ssl_errstr(e, sizeof(e)));
		return -1;
	}
	SSL_CTX_set_client_CA_list(s->ctx, cas);
	SSL_CTX_set_verify(s->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(s->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
				     SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				     SSL_MODE_RELEASE_BUFFERS);
	/* No resumption: every connection shows a certificate checked now, and nothing
	 * is written after the handshake but answers. */
	SSL_CTX_set_session_cache_mode(s->ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_num_tickets(s->ctx, 0) != 1 ||
	    SSL_CTX_set_session_id_context(s->ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
		snprintf(err, errlen, "TLS context: %s", ssl_errstr(e, sizeof(e)));
		return -1;
	}
	/* A client that vanishes without close_notify is an EOF like any other, not a
	 * TLS error worth a warning. */
	SSL_CTX_set_options(s->ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
	return 0;
}

static double dflt(double v, double d)
{
	return v > 0 ? v : d;
}

struct https_server *https_server_new(struct ev_loop *loop, const struct https_server_cfg *cfg,
				      char *err, size_t errlen)
{
	struct https_server *s;

	if (!cfg->listen || !cfg->cert_file || !cfg->key_file || !cfg->ca_file || !cfg->authorize ||
	    !cfg->handler) {
		snprintf(err, errlen,
			 "peer server: listen, certificate, key, CA, authorize and handler "
			 "are all required");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "peer server: out of memory");
		return NULL;
	}
	s->loop = loop;
	s->fd = -1;
	s->authorize = cfg->authorize;
	s->handler = cfg->handler;
	s->hctx = cfg->ctx;
	s->max_header = cfg->max_header ? cfg->max_header : HTTPS_MAX_HEADER_DEFAULT;
	s->max_url = cfg->max_url ? cfg->max_url : HTTPS_MAX_URL_DEFAULT;
	s->max_body = cfg->max_body ? cfg->max_body : HTTPS_MAX_BODY_DEFAULT;
	s->idle_timeout = dflt(cfg->idle_timeout, HTTPS_IDLE_TIMEOUT_DEFAULT);
	s->request_timeout = dflt(cfg->request_timeout, HTTPS_REQUEST_TIMEOUT_DEFAULT);
	s->handshake_timeout = dflt(cfg->handshake_timeout, HTTPS_HANDSHAKE_TIMEOUT_DEFAULT);
	s->max_conns = cfg->max_conns ? cfg->max_conns : HTTPS_MAX_CONNS_DEFAULT;
	s->rate = cfg->rate < 0 ? 0 : dflt(cfg->rate, HTTPS_RATE_DEFAULT);
	s->burst = dflt(cfg->burst, HTTPS_BURST_DEFAULT);
	if (s->burst < 1.0)
		s->burst = 1.0;
	ev_io_init(&s->accept_io, accept_cb, -1, EV_READ);
	ev_timer_init(&s->accept_pause, accept_pause_cb, 0.0, 0.0);
	if (server_tls(s, cfg, err, errlen) < 0 || server_listen(s, cfg->listen, err, errlen) < 0) {
		https_server_free(s);
		return NULL;
	}
	ev_io_set(&s->accept_io, s->fd, EV_READ);
	ev_io_start(loop, &s->accept_io);
	return s;
}

/* The client waiting for the handler learns the server is going, if its socket takes
 * the answer at once; then the connection closes either way. */
static void conn_goodbye(struct conn *c)
{
	static const char bye[] = "HTTP/1.1 503 Service Unavailable\r\n"
				  "Content-Length: 0\r\nConnection: close\r\n\r\n";

	if (c->state != C_WAIT || c->cont_off < sizeof(https_continue) - 1)
		return;
	ERR_clear_error();
	if (SSL_write(c->ssl, bye, sizeof(bye) - 1) > 0)
		(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
}

void https_server_free(struct https_server *s)
{
	if (!s)
		return;
	if (s->depth) {
		/* Inside the handler: the connection running it is still on the stack. */
		s->dying = 1;
		ev_io_stop(s->loop, &s->accept_io);
		ev_timer_stop(s->loop, &s->accept_pause);
		return;
	}
	ev_io_stop(s->loop, &s->accept_io);
	ev_timer_stop(s->loop, &s->accept_pause);
	if (s->fd >= 0 && close(s->fd) < 0)
		log_warn("peer server: closing the listening socket");
	while (s->conns) {
		conn_goodbye(s->conns);
		conn_close(s->conns);
	}
	while (s->pending) {
		struct srv_req *q = s->pending;

		req_unlink(q);
		req_free(q);
	}
	while (s->buckets) {
		struct bucket *b = s->buckets;

		s->buckets = b->next;
		free(b->cn);
		free(b);
	}
	SSL_CTX_free(s->ctx);
	ERR_clear_error();
	free(s);
}

int https_server_port(const struct https_server *s)
{
	return s->port;
}

unsigned https_server_connections(const struct https_server *s)
{
	return s->nconns;
}
