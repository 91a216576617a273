/* A recall-on-access stub lets its opens through (its first read or write recalls), and
 * the truncation of an open with O_TRUNC raises no pre-content event. Such an open
 * leaves an empty file whose record still says stub of the archived size: what its user
 * made is an empty file, so it becomes a resident file of the next version, never a stub
 * that reads EIO for good. Only recall-on-access stubs can get there: recall-on-open
 * stubs are recalled before any open goes on, and neither recall nor release ever
 * shortens a stub. */
#ifndef HSMD_EMPTIED_H
#define HSMD_EMPTIED_H

struct hsmd;
struct hsm_state;

/* If fd (with the state record st) is such an emptied stub, writes its new record and
 * updates st: 1. 0 if it is not one, -1 if the record could not be written (logged). */
int emptied_check(struct hsmd *h, int fd, struct hsm_state *st);
/* The same, then the catalog and the other sites hear of the new version (for callers
 * that have the file but not its name: the pre-content event handler). */
int emptied_check_note(struct hsmd *h, int fd, struct hsm_state *st);

/* An open with O_TRUNC of a stub (any stub: also a recall-on-open one, whose sources may
 * all be unreachable) needs none of its old bytes: fd is emptied here and recorded as
 * an empty resident file of the next version, which the opener's close publishes. 1
 * done, -1 failed (logged; the caller recalls instead). */
int emptied_truncate_open(struct hsmd *h, int fd, struct hsm_state *st);

#endif
