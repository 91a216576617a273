/* delayproxy: a TCP proxy that plays a slow WAN link between two sites in the multi-site
 * integration tests (tests/integration/sites.sh). The kernel here has no netem qdisc, so
 * latency is added in user space: every chunk read from one side is held DELAY_MS
 * milliseconds after it was read, then written to the other side, in order. A round trip
 * through the proxy therefore gains 2 x DELAY_MS. A FIN is held like data, so a half-close
 * passes through at the right place in the stream; a reset or an error on either side
 * resets the other side too, as a broken link would.
 *
 *   delayproxy [-v] [-d DELAY_MS] [-r FLAGFILE] LISTEN_ADDR:PORT TARGET_ADDR:PORT
 *
 * Prints "listening on ADDR:PORT" on stdout once it accepts connections (port 0: the port
 * the kernel chose). While FLAGFILE exists, a new connection is reset as soon as it is
 * accepted and an open one is reset when it next has data to pass on: a peer that dies
 * mid-transfer. -v logs every connection on stderr. SIGTERM or SIGINT closes everything
 * and exits 0. Exit status: 0 stopped by a signal, 1 could not start, 2 usage or an
 * address that does not resolve.
 *
 * The target is connected to without delay (the TCP handshake is not held): only bytes
 * and FINs are. Each direction holds at most DP_QUEUE_MAX bytes, so a connection moves
 * at most DP_QUEUE_MAX per DELAY_MS (80 MiB/s at 50 ms), like a link's window. */
#include <errno.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"

#define DP_READ_MAX	(64 * 1024)	  /* bytes taken per read: one chunk */
#define DP_QUEUE_MAX	(4 * 1024 * 1024) /* held per direction before reading pauses */
#define DP_DELAY_MAX_MS 3600000
#define DP_ACCEPT_RETRY 0.1 /* seconds to wait for a free fd after EMFILE */
#define DP_ADDR_STR	(INET6_ADDRSTRLEN + 16)

/* Bytes (or a FIN) read from one side and not yet written to the other. */
struct dp_chunk {
	struct dp_chunk *next;
	ev_tstamp due; /* when it may be written */
	size_t len, off;
	int fin; /* no data: the source sent FIN; shut down the destination's writing */
	char data[];
};

/* One direction of a connection. Its fds belong to the connection. */
struct dp_flow {
	struct dp_conn *conn;
	const char *what; /* "client to target" or "target to client", for messages */
	int from, to;
	ev_io rd, wr;
	ev_timer timer;		      /* runs while the head chunk is not yet due */
	struct dp_chunk *head, *tail; /* owned */
	size_t queued;		      /* data bytes in the chunks */
	int read_eof;		      /* FIN read from `from`: nothing more to read */
	int shut;		      /* that FIN was passed on to `to` */
};

struct dp_conn {
	struct dp_proxy *px;
	struct dp_conn *prev, *next;
	int cfd, tfd;  /* client and target sockets, owned */
	int connected; /* the connect to the target has finished */
	char client[DP_ADDR_STR];
	struct dp_flow up;   /* client to target */
	struct dp_flow down; /* target to client */
};

struct dp_proxy {
	struct ev_loop *loop;
	int lfd; /* listening socket, owned */
	ev_io accept_io;
	ev_timer accept_retry;
	ev_signal sigterm, sigint;
	struct sockaddr_storage target;
	socklen_t target_len;
	char target_str[DP_ADDR_STR];
	ev_tstamp delay;
	const char *flag;      /* -r FLAGFILE, or NULL */
	struct dp_conn *conns; /* owned */
	unsigned long nconns;
	char buf[DP_READ_MAX];
};

static void dp_usage(void)
{
	fprintf(stderr, "usage: delayproxy [-v] [-d DELAY_MS] [-r FLAGFILE] LISTEN_ADDR:PORT "
			"TARGET_ADDR:PORT\n");
}

/* "ADDR:PORT" or "[V6ADDR]:PORT" to a socket address. ADDR may be a name for the target
 * (looked up once, at start); an empty ADDR listens on every address. */
static int dp_resolve(const char *spec, int passive, struct sockaddr_storage *ss, socklen_t *sslen,
		      char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	const char *h = spec;
	size_t hlen;
	char *end;
	unsigned long port;
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
	struct addrinfo *res = NULL;
	int rc;

	if (!colon) {
		snprintf(err, errlen, "'%s': expected ADDR:PORT", spec);
		return -1;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno || port > 65535) {
		snprintf(err, errlen, "'%s': the port must be a number from 0 to 65535", spec);
		return -1;
	}
	hlen = (size_t)(colon - spec);
	if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host)) {
		snprintf(err, errlen, "'%s': address too long", spec);
		return -1;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	rc = getaddrinfo(hlen ? host : NULL, colon + 1, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "'%s': %s", spec,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	if (res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		snprintf(err, errlen, "'%s': address too long", spec);
		return -1;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*sslen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* ADDR:PORT (IPv6 in brackets) into out; "?" when it cannot be printed. */
static void dp_addr_str(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN], serv[16];

	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, outlen, "?");
		return;
	}
	snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static int dp_flag_set(const struct dp_proxy *px)
{
	struct stat st;

	return px->flag && stat(px->flag, &st) == 0;
}

/* Latency matters more than packet count here: without it Nagle would hold small
 * writes for an ACK and add its own delay on top of ours. */
static void dp_nodelay(int fd, const char *who)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_warn("TCP_NODELAY on the socket of %s", who);
}

/* Closes fd so that the other end sees a reset, not an orderly end of the stream. */
static void dp_close_reset(int fd, const char *who)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		log_warn("SO_LINGER on the socket of %s", who);
	if (close(fd) < 0)
		log_warn("close of the socket of %s", who);
}

static void dp_flow_drop(struct dp_flow *f)
{
	struct ev_loop *loop = f->conn->px->loop;

	ev_io_stop(loop, &f->rd);
	ev_io_stop(loop, &f->wr);
	ev_timer_stop(loop, &f->timer);
	while (f->head) {
		struct dp_chunk *c = f->head;

		f->head = c->next;
		free(c);
	}
	f->tail = NULL;
	f->queued = 0;
}

/* Ends c and frees it. reset: both sides see a reset (an error on one side must not look
 * like a clean end on the other); else both streams have ended and a plain close is
 * right. */
static void dp_conn_free(struct dp_conn *c, int reset)
{
	struct dp_proxy *px = c->px;

	dp_flow_drop(&c->up);
	dp_flow_drop(&c->down);
	if (reset) {
		dp_close_reset(c->cfd, c->client);
		dp_close_reset(c->tfd, px->target_str);
	} else {
		if (close(c->cfd) < 0)
			log_warn("close of the socket of %s", c->client);
		if (close(c->tfd) < 0)
			log_warn("close of the socket of %s", px->target_str);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		px->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	px->nconns--;
	log_debug("%s: connection %s (%lu open)", c->client, reset ? "reset" : "closed",
		  px->nconns);
	free(c);
}

static void dp_flow_schedule(struct dp_flow *f);

/* Writes every chunk that is due; returns -1 when the connection was freed. */
static int dp_flow_write(struct dp_flow *f)
{
	struct dp_conn *c = f->conn;
	struct ev_loop *loop = c->px->loop;

	while (f->head && f->head->due <= ev_now(loop)) {
		struct dp_chunk *k = f->head;
		ssize_t n;

		if (k->fin) {
			if (shutdown(f->to, SHUT_WR) < 0 && errno != ENOTCONN) {
				log_warn("%s: %s: shutdown", c->client, f->what);
				dp_conn_free(c, 1);
				return -1;
			}
			f->shut = 1;
			f->head = k->next;
			free(k);
			continue;
		}
		n = send(f->to, k->data + k->off, k->len - k->off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(loop, &f->wr);
				return 0;
			}
			log_debug("%s: %s: send: %s", c->client, f->what, strerror(errno));
			dp_conn_free(c, 1);
			return -1;
		}
		k->off += (size_t)n;
		if (k->off < k->len)
			continue;
		f->head = k->next;
		f->queued -= k->len;
		free(k);
		if (!f->read_eof && f->queued < DP_QUEUE_MAX)
			ev_io_start(loop, &f->rd);
	}
	if (!f->head)
		f->tail = NULL;
	ev_io_stop(loop, &f->wr);
	if (c->up.shut && c->down.shut) {
		dp_conn_free(c, 0);
		return -1;
	}
	dp_flow_schedule(f);
	return 0;
}

/* Starts whatever moves f next: the write watcher, or the timer until the head chunk is
 * due. Nothing while the target is still being connected to (the connect's completion
 * calls this again). */
static void dp_flow_schedule(struct dp_flow *f)
{
	struct ev_loop *loop = f->conn->px->loop;
	ev_tstamp wait;

	if (!f->conn->connected || !f->head || ev_is_active(&f->wr))
		return;
	wait = f->head->due - ev_now(loop);
	if (wait <= 0) {
		dp_flow_write(f);
		return;
	}
	ev_timer_stop(loop, &f->timer);
	ev_timer_set(&f->timer, wait, 0);
	ev_timer_start(loop, &f->timer);
}

static void dp_flow_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dp_flow_schedule(w->data);
}

static void dp_flow_wr_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	dp_flow_write(w->data);
}

static void dp_flow_rd_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dp_flow *f = w->data;
	struct dp_conn *c = f->conn;
	struct dp_proxy *px = c->px;
	struct dp_chunk *k;
	ssize_t n;

	(void)revents;
	if (dp_flag_set(px)) {
		log_debug("%s: %s exists: connection reset", c->client, px->flag);
		dp_conn_free(c, 1);
		return;
	}
	n = recv(f->from, px->buf, sizeof(px->buf), 0);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		log_debug("%s: %s: recv: %s", c->client, f->what, strerror(errno));
		dp_conn_free(c, 1);
		return;
	}
	k = malloc(sizeof(*k) + (size_t)n);
	if (!k) {
		log_warnx("%s: %s: out of memory for %zd bytes", c->client, f->what, n);
		dp_conn_free(c, 1);
		return;
	}
	/* The loop's clock was read before this callback: read it again so a chunk is held
	 * the full delay counted from now. */
	ev_now_update(loop);
	k->next = NULL;
	k->due = ev_now(loop) + px->delay;
	k->len = (size_t)n;
	k->off = 0;
	k->fin = n == 0;
	memcpy(k->data, px->buf, (size_t)n);
	if (f->tail)
		f->tail->next = k;
	else
		f->head = k;
	f->tail = k;
	f->queued += (size_t)n;
	if (n == 0) {
		f->read_eof = 1;
		ev_io_stop(loop, &f->rd);
	} else if (f->queued >= DP_QUEUE_MAX) {
		ev_io_stop(loop, &f->rd);
	}
	dp_flow_schedule(f);
}

/* The target socket became writable for the first time: the connect has finished. */
static void dp_connect_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dp_conn *c = w->data;
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	(void)revents;
	ev_io_stop(loop, w);
	if (getsockopt(c->tfd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr) {
		log_debug("%s: connect to %s: %s", c->client, c->px->target_str, strerror(soerr));
		dp_conn_free(c, 1);
		return;
	}
	/* From now on up.wr means "the target can take more". */
	ev_set_cb(w, dp_flow_wr_cb);
	w->data = &c->up;
	c->connected = 1;
	ev_io_start(loop, &c->down.rd);
	dp_flow_schedule(&c->up);
}

static void dp_flow_init(struct dp_conn *c, struct dp_flow *f, const char *what, int from, int to)
{
	f->conn = c;
	f->what = what;
	f->from = from;
	f->to = to;
	ev_io_init(&f->rd, dp_flow_rd_cb, from, EV_READ);
	ev_io_init(&f->wr, dp_flow_wr_cb, to, EV_WRITE);
	ev_timer_init(&f->timer, dp_flow_timer_cb, 0, 0);
	f->rd.data = f->wr.data = f->timer.data = f;
}

/* Takes cfd (an accepted client socket): connects to the target and starts passing
 * bytes. On failure cfd is reset and closed. */
static void dp_conn_start(struct dp_proxy *px, int cfd, const struct sockaddr *sa, socklen_t salen)
{
	struct dp_conn *c;
	char client[DP_ADDR_STR];
	int tfd;

	dp_addr_str(sa, salen, client, sizeof(client));
	if (dp_flag_set(px)) {
		log_debug("%s: %s exists: connection refused with a reset", client, px->flag);
		dp_close_reset(cfd, client);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		log_warnx("%s: out of memory for a connection", client);
		dp_close_reset(cfd, client);
		return;
	}
	tfd = socket(px->target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (tfd < 0) {
		log_warn("%s: socket for %s", client, px->target_str);
		dp_close_reset(cfd, client);
		free(c);
		return;
	}
	c->px = px;
	c->cfd = cfd;
	c->tfd = tfd;
	memcpy(c->client, client, sizeof(c->client));
	dp_nodelay(cfd, c->client);
	dp_nodelay(tfd, px->target_str);
	dp_flow_init(c, &c->up, "client to target", cfd, tfd);
	dp_flow_init(c, &c->down, "target to client", tfd, cfd);
	c->next = px->conns;
	if (px->conns)
		px->conns->prev = c;
	px->conns = c;
	px->nconns++;
	log_debug("%s: connected (%lu open)", c->client, px->nconns);

	/* The client's bytes are read and held while the connect runs. */
	ev_io_start(px->loop, &c->up.rd);
	if (connect(tfd, (struct sockaddr *)&px->target, px->target_len) == 0) {
		c->connected = 1;
		ev_io_start(px->loop, &c->down.rd);
		return;
	}
	if (errno != EINPROGRESS) {
		log_debug("%s: connect to %s: %s", c->client, px->target_str, strerror(errno));
		dp_conn_free(c, 1);
		return;
	}
	ev_set_cb(&c->up.wr, dp_connect_cb);
	c->up.wr.data = c;
	ev_io_start(px->loop, &c->up.wr);
}

static void dp_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dp_proxy *px = w->data;

	(void)revents;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		int fd =
		    accept4(px->lfd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0) {
			dp_conn_start(px, fd, (struct sockaddr *)&ss, sslen);
			continue;
		}
		switch (errno) {
		case EAGAIN:
#if EWOULDBLOCK != EAGAIN
		case EWOULDBLOCK:
#endif
			return;
		case EINTR:
		case ECONNABORTED:
		case EPROTO:
		case EPERM:
		case ENETDOWN:
		case ENETUNREACH:
		case EHOSTDOWN:
		case EHOSTUNREACH:
		case ENONET:
		case ENOPROTOOPT:
		case EOPNOTSUPP:
			/* That one connection is lost (accept(2) passes on errors of the new
			 * socket); the next may be fine. */
			log_debug("accept: %s", strerror(errno));
			continue;
		default:
			/* Out of fds or memory (or worse): the pending connection stays
			 * readable, so pause instead of spinning on the same error. */
			log_warn("accept (%lu connections open; retrying in %.1f s)", px->nconns,
				 DP_ACCEPT_RETRY);
			ev_io_stop(loop, &px->accept_io);
			ev_timer_set(&px->accept_retry, DP_ACCEPT_RETRY, 0);
			ev_timer_start(loop, &px->accept_retry);
			return;
		}
	}
}

static void dp_accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dp_proxy *px = w->data;

	(void)revents;
	ev_io_start(loop, &px->accept_io);
}

static void dp_signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* Binds and listens on addr (spec as given, for messages); prints "listening on
 * ADDR:PORT". Returns 0 or -1 with a message in err. */
static int dp_listen(struct dp_proxy *px, const struct sockaddr_storage *addr, socklen_t addrlen,
		     const char *spec, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	char shown[DP_ADDR_STR];
	int one = 1;

	px->lfd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (px->lfd < 0) {
		snprintf(err, errlen, "socket for %s: %s", spec, strerror(errno));
		return -1;
	}
	/* Tests restart proxies on the same port while old connections sit in TIME_WAIT. */
	if (setsockopt(px->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
		snprintf(err, errlen, "SO_REUSEADDR on %s: %s", spec, strerror(errno));
		return -1;
	}
	if (bind(px->lfd, (const struct sockaddr *)addr, addrlen) < 0) {
		snprintf(err, errlen, "bind to %s: %s", spec, strerror(errno));
		return -1;
	}
	if (listen(px->lfd, SOMAXCONN) < 0) {
		snprintf(err, errlen, "listen on %s: %s", spec, strerror(errno));
		return -1;
	}
	sslen = sizeof(ss);
	if (getsockname(px->lfd, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "getsockname of %s: %s", spec, strerror(errno));
		return -1;
	}
	dp_addr_str((struct sockaddr *)&ss, sslen, shown, sizeof(shown));
	if (printf("listening on %s\n", shown) < 0 || fflush(stdout) != 0) {
		snprintf(err, errlen, "writing 'listening on %s' to stdout: %s", shown,
			 strerror(errno));
		return -1;
	}
	return 0;
}

static int dp_parse_delay(const char *s, ev_tstamp *delay)
{
	char *end;
	long ms;

	errno = 0;
	ms = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno || ms < 0 || ms > DP_DELAY_MAX_MS) {
		fprintf(stderr, "delayproxy: -d '%s': expected milliseconds from 0 to %d\n", s,
			DP_DELAY_MAX_MS);
		return -1;
	}
	*delay = (ev_tstamp)ms / 1000.0;
	return 0;
}

int main(int argc, char **argv)
{
	struct dp_proxy *px;
	struct sockaddr_storage laddr;
	socklen_t laddrlen;
	char err[512];
	int opt, level = LOG_LVL_WARN, rc = 1;

	/* Every write uses MSG_NOSIGNAL; this covers stdout going away too. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
		perror("delayproxy: ignoring SIGPIPE");
		return 1;
	}
	px = calloc(1, sizeof(*px));
	if (!px) {
		fprintf(stderr, "delayproxy: out of memory\n");
		return 1;
	}
	px->lfd = -1;
	while ((opt = getopt(argc, argv, "vd:r:")) != -1) {
		switch (opt) {
		case 'v':
			level = LOG_LVL_DEBUG;
			break;
		case 'd':
			if (dp_parse_delay(optarg, &px->delay) < 0) {
				free(px);
				return 2;
			}
			break;
		case 'r':
			px->flag = optarg;
			break;
		default:
			dp_usage();
			free(px);
			return 2;
		}
	}
	if (argc - optind != 2) {
		dp_usage();
		free(px);
		return 2;
	}
	log_init("delayproxy", level, 1);
	if (dp_resolve(argv[optind], 1, &laddr, &laddrlen, err, sizeof(err)) < 0) {
		log_warnx("listen address %s", err);
		free(px);
		return 2;
	}
	if (dp_resolve(argv[optind + 1], 0, &px->target, &px->target_len, err, sizeof(err)) < 0) {
		log_warnx("target %s", err);
		free(px);
		return 2;
	}
	dp_addr_str((struct sockaddr *)&px->target, px->target_len, px->target_str,
		    sizeof(px->target_str));
	px->loop = ev_default_loop(EVFLAG_AUTO);
	if (!px->loop) {
		log_warnx("cannot make the event loop (libev)");
		free(px);
		return 1;
	}
	if (dp_listen(px, &laddr, laddrlen, argv[optind], err, sizeof(err)) < 0) {
		log_warnx("%s", err);
		goto out;
	}
	ev_io_init(&px->accept_io, dp_accept_cb, px->lfd, EV_READ);
	ev_timer_init(&px->accept_retry, dp_accept_retry_cb, 0, 0);
	ev_signal_init(&px->sigterm, dp_signal_cb, SIGTERM);
	ev_signal_init(&px->sigint, dp_signal_cb, SIGINT);
	px->accept_io.data = px->accept_retry.data = px;
	ev_io_start(px->loop, &px->accept_io);
	ev_signal_start(px->loop, &px->sigterm);
	ev_signal_start(px->loop, &px->sigint);
	ev_run(px->loop, 0);
	log_debug("stopping with %lu connections open", px->nconns);
	rc = 0;

out:
	while (px->conns)
		dp_conn_free(px->conns, 1);
	ev_io_stop(px->loop, &px->accept_io);
	ev_timer_stop(px->loop, &px->accept_retry);
	ev_signal_stop(px->loop, &px->sigterm);
	ev_signal_stop(px->loop, &px->sigint);
	if (px->lfd >= 0 && close(px->lfd) < 0) {
		log_warn("close of the listening socket");
		rc = 1;
	}
	ev_loop_destroy(px->loop);
	free(px);
	return rc;
}
