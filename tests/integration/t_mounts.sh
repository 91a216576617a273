#!/bin/bash
# Mount propagation: hsmd's own mount namespace is a slave of the host's, so a
# filesystem that was mounted when hsmd started and that the host unmounts afterwards
# is really gone (not kept busy by hsmd): e2fsck sees it unused and the loop device
# detaches at once. hsmd's own admin mounts stay invisible to the host.
#
# Propagation needs the host's mount to be shared, as systemd makes / on every host;
# test machines may run with a private root, so the unrelated filesystem is mounted
# under a shared bind mount of the test's own.
. "$(dirname "$0")/lib.sh"
it_setup_root
tap_plan 7

mkvol vol ext4 128M
mkdir -p "$T/shared"
mount --bind "$T/shared" "$T/shared" && IT_MOUNTS+=("$T/shared") && mount --make-shared "$T/shared" ||
	bail_out "cannot make a shared bind mount on $T/shared"
truncate -s 64M "$T/other.img" && mkfs.ext4 -q -F "$T/other.img" >/dev/null 2>&1 ||
	bail_out "mkfs of $T/other.img failed"
other_dev=$(losetup -f --show "$T/other.img") || bail_out "losetup of $T/other.img failed"
IT_LOOPS+=("$other_dev")
mkdir -p "$T/shared/other" && mount "$other_dev" "$T/shared/other" || bail_out "mount failed"
IT_MOUNTS+=("$T/shared/other")
ok '[ -n "$other_dev" ]' "an unrelated filesystem is mounted on $T/shared/other ($other_dev)"
hsmd_conf "$T/vol"
ok 'hsmd_start' "hsmd starts with the unrelated filesystem mounted"

ok 'grep -q " $T/shared/other " /proc/$(worker_pid)/mountinfo' \
	"hsmd's namespace has its copy of the unrelated mount"
ok '! grep -q "/admin/v " /proc/self/mountinfo' "hsmd's admin mount is not visible to the host"
timeout 30 umount "$T/shared/other"
ok 'wait_for 10 bash -c "! grep -q \" $T/shared/other \" /proc/$(worker_pid)/mountinfo"' \
	"the host's umount reached hsmd's namespace"
ok 'timeout 30 e2fsck -n "$other_dev" >"$T/fsck.out" 2>&1 && ! grep -qi "mounted\|in use" "$T/fsck.out"' \
	"e2fsck finds the filesystem unused after the host unmounted it" "$(cat "$T/fsck.out")"
losetup -d "$other_dev"
ok 'wait_for 10 bash -c "! losetup \"$other_dev\" >/dev/null 2>&1"' \
	"its loop device detaches at once, not deferred until hsmd exits"
hsmd_stop
tap_done
