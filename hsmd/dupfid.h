/* Telling a file from its copies. cp -a, rsync -X and restores from backups copy the
 * trusted.hsm record, and so the fid, onto another inode. Two live files with one fid
 * would share one catalog record and one namespace entry, and a release or recall of
 * one would act on the other's versions. The catalog records the inode that carries
 * each fid; a file whose fid is filed under another inode that still carries it is a
 * copy and gets an identity of its own, here, before anything acts on the old one. */
#ifndef HSMD_DUPFID_H
#define HSMD_DUPFID_H

#include <sys/stat.h>

#include "lib/hsmxattr.h"

struct hsmd;
struct hsmd_vol;
struct cat_record;

/* fd: the file (through the admin mount, or an event fd), or -1 to open rel; sb: its
 * fstat; st: its record as read; rel: its path in v, or NULL when not known (the
 * intercept). known: the catalog record of st->fid, or NULL when it has none (the
 * caller looked it up already); use dupfid_check for a lookup here.
 * Returns 0 when st is this file's own, 1 when the file was a copy and now carries a
 * fresh fid (written to its xattr and to *st), -1 when the copy could not be given one
 * (logged; do not act on the file). Loop thread (it reads the catalog). */
int dupfid_check_known(struct hsmd *h, struct hsmd_vol *v, const char *rel, int fd,
		       const struct stat *sb, struct hsm_state *st, const struct cat_record *known);
int dupfid_check(struct hsmd *h, struct hsmd_vol *v, const char *rel, int fd, const struct stat *sb,
		 struct hsm_state *st);
/* The same for an event's fd (the intercept): the path is not known there. */
int dupfid_check_event(struct hsmd *h, int fd, struct hsm_state *st);
/* The volume whose filesystem is dev, or NULL. */
struct hsmd_vol *dupfid_vol_of_dev(struct hsmd *h, dev_t dev);

#endif
