#include "hsmd/intercept.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "hsmd/dupfid.h"
#include "hsmd/emptied.h"
#include "hsmd/opener.h"
#include "hsmd/fan.h"
#include "hsmd/guard_link.h"
#include "hsmd/scan.h"
#include "hsmd/worker.h"
#include "lib/log.h"
#include "recall/recall.h"

/* A reader's event: the fd is the kernel's event fd, owned until it is answered. */
struct intercept_event {
	struct hsmd *h;
	int fd;
	uint64_t mask;
	int pid;
	struct hsm_fid fid; /* of the stub being recalled */
	int from_guard;	    /* handed over by hsmd-guard: answered through it (ref) */
	struct guard_ref ref;
	struct intercept_event *next;
};

struct intercept_defer {
	struct hsm_fid fid;
	struct intercept_event *held;
	struct intercept_defer *next;
};

static void intercept_handle(struct intercept_event *ev);

/* Replaces the event's file with /dev/null under the same fd number: the file is
 * closed (the kernel opened it O_RDWR, and an exec that goes on while a writable
 * descriptor is open fails with ETXTBSY), while the number, which the response is
 * matched by, stays ours until we answer. */
static void intercept_drop_file(struct intercept_event *ev)
{
	if (dup2(ev->h->devnull_fd, ev->fd) < 0)
		log_warn("cannot close the event file of pid %d early", ev->pid);
}

static void intercept_answer(struct intercept_event *ev, int err, int watch_done)
{
	struct hsmd *h = ev->h;

	/* The data is here for good: stop asking about this inode. */
	if (!err && watch_done && fan_ignore_inode(h->perm_fd, ev->fd) < 0)
		log_warn("cannot add ignore mark (pid %d)", ev->pid);
	intercept_drop_file(ev);
	if (ev->from_guard)
		guard_link_answer(h->guard, &ev->ref, err);
	else if (fan_respond(h->perm_fd, ev->fd, err) < 0)
		log_warn("cannot answer fanotify event (pid %d)", ev->pid);
	if (err)
		h->ev_denied++;
	else
		h->ev_allowed++;
	close(ev->fd);
	free(ev);
}

static void intercept_recalled(void *arg, int err, const char *msg, uint64_t bytes,
			       const struct hsm_state *st, const struct timespec *ctime)
{
	struct intercept_event *ev = arg;

	(void)bytes;
	if (err)
		log_warnx("denying access of pid %d to a stub: %s", ev->pid, msg ? msg : "");
	else
		scan_note_recalled(ev->h, st, ctime);
	/* Any failure is EIO to the reader: never zeros, never a partial file. The
	 * recall has added the ignore mark itself (settle). */
	intercept_answer(ev, err ? EIO : 0, 0);
}

static struct intercept_defer *intercept_find_defer(struct hsmd *h, const struct hsm_fid *fid)
{
	for (struct intercept_defer *d = h->releasing; d; d = d->next)
		if (memcmp(d->fid.b, fid->b, 16) == 0)
			return d;
	return NULL;
}

static void intercept_handle(struct intercept_event *ev)
{
	struct hsmd *h = ev->h;
	uint8_t rec[HSM_XATTR_MAX];
	struct hsm_state st;
	struct intercept_defer *d;
	char err[200];
	ssize_t n = fgetxattr(ev->fd, HSM_XATTR_NAME, rec, sizeof(rec));
	int data_fd;

	if (n < 0) {
		if (errno == ENODATA || errno == ENOTSUP) {
			/* Not (yet) managed: its data is whatever is on disk. */
			intercept_answer(ev, 0, 1);
			return;
		}
		log_warn("cannot read the state of a file opened by pid %d; denying", ev->pid);
		intercept_answer(ev, EIO, 0);
		return;
	}
	if (hsmx_decode(rec, (size_t)n, &st, err, sizeof(err)) < 0) {
		log_warnx("corrupt state record on a file opened by pid %d (%s); denying", ev->pid,
			  err);
		intercept_answer(ev, EIO, 0);
		return;
	}
	d = intercept_find_defer(h, &st.fid);
	if (d) {
		ev->next = d->held;
		d->held = ev;
		return;
	}
	/* A copy that says stub over its own data keeps it (hsmd/dupfid.c). */
	if (st.state == HSM_STATE_STUB)
		dupfid_check_event(h, ev->fd, &st);
	if (st.state == HSM_STATE_STUB && emptied_check_note(h, ev->fd, &st) < 0) {
		intercept_answer(ev, EIO, 0);
		return;
	}
	/* An open that truncates needs none of the old bytes: no recall, which also lets
	 * it through when every source of them is out of reach. */
	if (st.state == HSM_STATE_STUB && (ev->mask & FAN_OPEN_PERM) && opener_truncates(ev->pid) &&
	    emptied_truncate_open(h, ev->fd, &st) == 1) {
		intercept_answer(ev, 0, 1);
		return;
	}
	if (st.state != HSM_STATE_STUB) {
		intercept_answer(ev, 0, 1);
		return;
	}
	/* Recall-on-access stubs let opens through; their first read recalls. */
	if ((st.flags & HSM_FLAG_ON_ACCESS) &&
	    !(ev->mask & (FAN_PRE_ACCESS | FAN_OPEN_EXEC_PERM))) {
		intercept_answer(ev, 0, 0);
		return;
	}
	data_fd = dup(ev->fd);
	if (data_fd < 0) {
		log_warn("cannot recall for pid %d", ev->pid);
		intercept_answer(ev, EIO, 0);
		return;
	}
	intercept_drop_file(ev);
	ev->fid = st.fid;
	recall_file(&h->mv, data_fd, &st, intercept_recalled, ev);
}

static void intercept_read_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct hsmd *h = w->data;
	/* Aligned for the metadata structs that are read into it. */
	static uint64_t buf[8192];

	(void)loop;
	(void)revents;
	for (int round = 0; round < 8; round++) {
		ssize_t len = read(h->perm_fd, buf, sizeof(buf));
		struct fanotify_event_metadata *md = (void *)buf;

		if (len < 0) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("reading fanotify events");
			return;
		}
		for (; FAN_EVENT_OK(md, len); md = FAN_EVENT_NEXT(md, len)) {
			struct intercept_event *ev;

			if (md->vers != FANOTIFY_METADATA_VERSION) {
				log_warnx("fanotify metadata version %d not understood", md->vers);
				if (md->fd >= 0) {
					fan_respond(h->perm_fd, md->fd, EIO);
					close(md->fd);
				}
				continue;
			}
			if (md->fd < 0) {
				log_warnx("fanotify event without a file (queue overflow?)");
				continue;
			}
			h->ev_perm++;
			ev = calloc(1, sizeof(*ev));
			if (!ev) {
				fan_respond(h->perm_fd, md->fd, EIO);
				close(md->fd);
				continue;
			}
			ev->h = h;
			ev->fd = md->fd;
			ev->mask = md->mask;
			ev->pid = md->pid;
			intercept_handle(ev);
		}
	}
}

void intercept_start(struct hsmd *h)
{
	h->devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (h->devnull_fd < 0)
		fatal("open /dev/null");
	ev_io_init(&h->perm_w, intercept_read_cb, h->perm_fd, EV_READ);
	h->perm_w.data = h;
	ev_io_start(h->loop, &h->perm_w);
}

void intercept_forwarded(struct hsmd *h, int fd, uint64_t mask, int pid,
			 const struct guard_ref *ref)
{
	struct intercept_event *ev = calloc(1, sizeof(*ev));

	if (!ev) {
		guard_link_answer(h->guard, ref, EIO);
		close(fd);
		return;
	}
	h->ev_perm++;
	h->ev_from_guard++;
	ev->h = h;
	ev->fd = fd;
	ev->mask = mask;
	ev->pid = pid;
	ev->from_guard = 1;
	ev->ref = *ref;
	log_info("taking over pid %d's access held by hsmd-guard", pid);
	intercept_handle(ev);
}

void intercept_stop(struct hsmd *h)
{
	ev_io_stop(h->loop, &h->perm_w);
}

void intercept_hold(struct hsmd *h, const struct hsm_fid *fid)
{
	struct intercept_defer *d = calloc(1, sizeof(*d));

	if (!d)
		fatalx("out of memory");
	d->fid = *fid;
	d->next = h->releasing;
	h->releasing = d;
}

void intercept_release_held(struct hsmd *h, const struct hsm_fid *fid)
{
	struct intercept_defer **pp = &h->releasing, *d;
	struct intercept_event *ev, *next;

	while (*pp && memcmp((*pp)->fid.b, fid->b, 16) != 0)
		pp = &(*pp)->next;
	d = *pp;
	if (!d)
		return;
	*pp = d->next;
	for (ev = d->held; ev; ev = next) {
		next = ev->next;
		intercept_handle(ev);
	}
	free(d);
}

int intercept_unwatch(void *hsmd, int fd)
{
	struct hsmd *h = hsmd;

	return fan_unignore_inode(h->perm_fd, fd);
}

int intercept_settle(void *hsmd, int fd)
{
	struct hsmd *h = hsmd;

	return fan_ignore_inode(h->perm_fd, fd);
}
