/* The peer server (DESIGN §7): HTTP/1.1 over TLS 1.3 with mutual authentication, on
 * one libev loop (OpenSSL in non-blocking mode on io watchers, http-parser for HTTP).
 * Everything runs on the loop thread. The process must ignore SIGPIPE (hsmd's worker
 * does): a client that leaves mid-answer would otherwise kill it.
 *
 * A client must present a certificate signed by ca_file, or the handshake fails and it
 * never gets an HTTP answer. Once the handshake is done, the certificate's subject CN
 * is given to cfg->authorize; a refused CN gets 403 to its first request and is cut
 * off. Each connection carries one request at a time (bytes of a pipelined next one
 * wait until the current one is answered). Requests that break a limit are answered
 * by the server itself and the connection is closed: 400 malformed, 405 method other
 * than GET/HEAD/POST, 414 URL, 431 header, 413 body (Content-Length is checked before
 * any of the body is read), 429 over the CN's request rate (this one keeps the
 * connection). Slow senders are cut off request_timeout after the request's first
 * byte, idle connections after idle_timeout, stalled answers after idle_timeout
 * without progress.
 *
 * Every other complete request goes to cfg->handler, which answers it then or later
 * (a long poll) with https_respond, exactly once. Ownership: the server owns each
 * https_req; it stays valid until https_respond even when its client has left
 * (https_req_gone says so; the answer is then dropped). https_server_free frees the
 * requests still unanswered, without calling the handler: their pointers die with the
 * server, so a handler stops its own timers for them first or never touches them
 * again. */
#ifndef HSM_HTTPS_SERVER_H
#define HSM_HTTPS_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include "lib/httpreq.h" /* https_query_get, https_path_decode */

struct ev_loop;
struct https_server;

/* Limits and timeouts whose field is 0 in the configuration. */
#define HTTPS_MAX_HEADER_DEFAULT	(8 * 1024) /* request line and headers, bytes */
#define HTTPS_MAX_URL_DEFAULT		(2 * 1024)
#define HTTPS_MAX_BODY_DEFAULT		(1024 * 1024)
#define HTTPS_IDLE_TIMEOUT_DEFAULT	30.0 /* seconds */
#define HTTPS_REQUEST_TIMEOUT_DEFAULT	10.0
#define HTTPS_HANDSHAKE_TIMEOUT_DEFAULT 10.0
#define HTTPS_MAX_CONNS_DEFAULT		256
/* Per CN. A peer recalling small files sends two requests per file (manifest and
 * chunk): the limit must sit well above DESIGN §12's first-read rate or it fails
 * legitimate recalls; it is there to stop a runaway client, not to pace a healthy one. */
#define HTTPS_RATE_DEFAULT  5000.0 /* requests per second per CN */
#define HTTPS_BURST_DEFAULT 10000.0

/* One request, as the handler sees it. Every string is NUL-terminated and owned by the
 * server until https_respond. */
struct https_req {
	const char *method;  /* "GET", "HEAD" or "POST" */
	const char *path;    /* raw (still percent-encoded) path; starts with '/' */
	const char *query;   /* raw, after '?'; "" when none */
	const char *peer_cn; /* the client certificate's CN, authorized */
	const char *remote;  /* "ADDR:PORT" of the client, "[ADDR]:PORT" for IPv6 */
	const char *body;    /* never NULL; a NUL follows it (not counted) */
	size_t body_len;
	void *data; /* the handler's, NULL at first; the server never touches it */
};

struct https_server_cfg {
	const char *listen; /* "ADDR:PORT": "0.0.0.0:7443", "[::1]:7443"; port 0 = any */
	const char *cert_file, *key_file; /* the server's certificate (chain) and key, PEM */
	const char *ca_file;		  /* the CA client certificates must chain to */
	/* 0 lets the peer named cn in, anything else refuses it. Must not free the
	 * server. */
	int (*authorize)(void *ctx, const char *cn);
	/* A complete request; answer it with https_respond, now or later. May call
	 * https_server_free. */
	void (*handler)(void *ctx, struct https_req *req);
	void *ctx;
	size_t max_header, max_url, max_body; /* bytes; 0 = the defaults above */
	double idle_timeout;		      /* seconds; 0 = the defaults above */
	double request_timeout;
	double handshake_timeout;
	unsigned max_conns; /* more are closed as soon as accepted */
	double rate, burst; /* token bucket per CN; 0 = default, < 0 = no limit */
};

/* Loads the certificates, binds and listens (SO_REUSEADDR) and starts accepting on
 * loop. Returns NULL with a message in err (naming the file or address at fault). */
struct https_server *https_server_new(struct ev_loop *loop, const struct https_server_cfg *cfg,
				      char *err, size_t errlen);
/* Closes every connection (a request still with the handler gets a best-effort 503),
 * frees unanswered requests without calling the handler, then the server. NULL is a
 * no-op. Inside the handler, the server goes when the handler returns. */
void https_server_free(struct https_server *s);
/* The bound port (useful after port 0). */
int https_server_port(const struct https_server *s);
/* Open connections, in every state. */
unsigned https_server_connections(const struct https_server *s);

/* The value of header name (case-insensitive; the first if repeated), or NULL. */
const char *https_req_header(const struct https_req *r, const char *name);
/* 1 once the client of r has gone (closed, reset, timed out): an answer is dropped. */
int https_req_gone(const struct https_req *r);
/* Answers r and frees it. status 200..599 (others become 500); content_type and each
 * "Name: value" line of headers (NULL-terminated, or NULL) are copied; a line with CR
 * or LF, or one setting Content-Length, Transfer-Encoding or Connection, is dropped
 * with a warning. body is malloc'd memory the server takes in every case (NULL = empty
 * body). Content-Length is always len, even for HEAD, whose answer has no body: a HEAD
 * handler may pass body NULL with the length of the GET answer. 204 and 304 carry
 * neither body nor Content-Length. Must be called exactly once per request, and never
 * after https_server_free. */
void https_respond(struct https_req *r, int status, const char *content_type,
		   const char *const *headers, char *body, size_t len);

/* Parses "ADDR:PORT" (numeric IPv4, or IPv6 in brackets; port 0..65535). 0, or -1
 * with a message in err. */
int https_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
		       size_t errlen);
#endif
