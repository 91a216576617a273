/* Change tracking: the notification group's events keep the catalog and journal in
 * step with the volume, and a write to an archived file makes it resident (dirty)
 * with a new version. */
#ifndef HSMD_NOTIFY_H
#define HSMD_NOTIFY_H

struct hsmd;

void notify_start(struct hsmd *h);
void notify_stop(struct hsmd *h);

#endif
