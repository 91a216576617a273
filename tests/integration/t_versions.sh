#!/bin/bash
# No spurious versions: archiving a tree that an fsstress-like workload made (4
# processes: creat, write, truncate by path, fsync, fdatasync, hard links,
# symlinks, FIFOs, mkdir, rename, chown, user xattrs, fallocate, punch, mmap
# writes, unlink) leaves every file archived at the version it had: no file turns
# resident again, no new version is made and published with nothing writing.
# Before the fix, a truncate(2) by path (FAN_MODIFY and no close) went unnoted, and
# the archive's own note then found the new size and made a version of it.
. "$(dirname "$0")/lib.sh"
it_setup_root

mkvol vol ext4 512M
V="$T/vol"
hsmd_conf "$V"
ok 'hsmd_start' "hsmd starts" || bail_out "hsmd did not start"

MARKS=0
sync_events() {
	MARKS=$((MARKS + 1))
	vt bash -c "echo m >'$V/m/$MARKS'"
	wait_state "$V/m/$MARKS" resident 30
}
mkdir -p "$V/m" "$V/x"

cat >"$T/stress.py" <<'PY'
import ctypes, mmap, os, random, sys
root, nops, nproc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
OPS = ["creat", "write", "write", "truncate", "fsync", "fdatasync", "link", "symlink",
       "mknod", "mkdir", "rename", "chown", "setxattr", "falloc", "punch", "mwrite", "unlink"]
def child(p):
    rnd = random.Random(1000 + p)   # the same tree every run
    d = os.path.join(root, "p%d" % p)
    os.makedirs(d)
    files, dirs, n = [], [d], 0
    def newname():
        nonlocal n
        n += 1
        return os.path.join(rnd.choice(dirs), "f%d" % n)
    for i in range(nops):
        op = rnd.choice(OPS) if files else "creat"
        f = rnd.choice(files) if files else None
        try:
            if op == "creat":
                f = newname(); os.close(os.open(f, os.O_CREAT | os.O_WRONLY, 0o644)); files.append(f)
            elif op == "write":
                fd = os.open(f, os.O_WRONLY)
                os.pwrite(fd, rnd.randbytes(rnd.randint(1, 65536)), rnd.randint(0, 1 << 20)); os.close(fd)
            elif op == "truncate":
                os.truncate(f, rnd.randint(0, 1 << 20))
            elif op in ("fsync", "fdatasync"):
                fd = os.open(f, os.O_WRONLY); (os.fsync if op == "fsync" else os.fdatasync)(fd); os.close(fd)
            elif op == "link":
                g = newname(); os.link(f, g); files.append(g)
            elif op == "symlink":
                os.symlink(f, newname())
            elif op == "mknod":
                os.mkfifo(newname())
            elif op == "mkdir":
                x = os.path.join(rnd.choice(dirs), "d%d" % i); os.mkdir(x); dirs.append(x)
            elif op == "rename":
                g = newname(); os.rename(f, g); files[files.index(f)] = g
            elif op == "chown":
                os.chown(f, rnd.randint(0, 1000), rnd.randint(0, 1000))
            elif op == "setxattr":
                os.setxattr(f, "user.x%d" % rnd.randint(0, 3), rnd.randbytes(rnd.randint(1, 64)))
            elif op in ("falloc", "punch"):
                mode = rnd.choice([0, 1]) if op == "falloc" else 3   # KEEP_SIZE 1, PUNCH_HOLE 2
                fd = os.open(f, os.O_WRONLY)
                libc.fallocate(fd, mode, rnd.randint(0, 1 << 20), rnd.randint(1, 1 << 18)); os.close(fd)
            elif op == "mwrite":
                fd = os.open(f, os.O_RDWR); sz = os.fstat(fd).st_size
                if sz > 0:
                    m = mmap.mmap(fd, sz); m[rnd.randint(0, sz - 1)] = 120; m.close()
                os.close(fd)
            elif op == "unlink":
                os.unlink(f); files.remove(f)
        except OSError:
            pass
    os._exit(0)
pids = []
for p in range(nproc):
    pid = os.fork()
    if pid == 0:
        child(p)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
PY
ok_cmd "an fsstress-like workload (4 processes, 500 operations each)" \
	vt python3 "$T/stress.py" "$V/s" 500 4

# The patterns one by one, each the last thing done to its file.
mkrand "$V/x/ptrunc" 300000
mkrand "$V/x/ptruncup" 300000
mkrand "$V/x/linked" 200000
mkrand "$V/x/mmapped" 100000
ok 'sync_events' "hsmd has seen the files"
ok_cmd "truncate by path, hard link, mmap write" vt python3 - "$V/x" <<'PY'
import mmap, os, sys
x = sys.argv[1]
os.truncate(x + "/ptrunc", 1000)
os.truncate(x + "/ptruncup", 900000)
os.link(x + "/linked", x + "/linked2")
os.truncate(x + "/linked2", 4096)
fd = os.open(x + "/mmapped", os.O_RDWR)
m = mmap.mmap(fd, 100000); m[7] = 0; m.close(); os.close(fd)
PY
ok 'sync_events' "hsmd has handled every event of the workload"

# "PATH STATE VERSION ARCHIVED_VERSION" of every regular file, sorted.
snapshot() {
	hsm state -r --json "$V/s" "$V/x" 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if o.get("type") == "item":
        print(o.get("path"), o.get("state"), o.get("version"), o.get("archived_version", 0))
' | sort
}
snapshot >"$T/before"
n=$(wc -l <"$T/before")
ok '[ "$n" -gt 100 ]' "the workload made many files ($n)"

# Two names of one inode archived at once: the second sees the first's record land
# and fails "file changed"; the second pass archives what the first did not.
hsm archive -r "$V/s" "$V/x" >"$T/archive1.out" 2>&1
ok_cmd "a second archive -r finishes every file" hsm archive -r "$V/s" "$V/x"
ok 'sync_events' "hsmd has handled every event since the archive"
snapshot >"$T/after"

awk '{ print $1, "archived", $3, $3 }' "$T/before" >"$T/want"
bad=$(diff "$T/want" "$T/after" | grep -c '^>')
is "$bad" 0 "every file is archived at the version it had before the archive" \
	"$(diff "$T/want" "$T/after" | head -20)"
for f in ptrunc ptruncup linked linked2 mmapped; do
	is "$(grep "^$V/x/$f " "$T/after" | cut -d' ' -f2-4)" \
		"$(grep "^$V/x/$f " "$T/before" | cut -d' ' -f3 | sed 's/.*/archived & &/')" \
		"x/$f: archived at the version it had"
done
ok 'hsmd_stop' "hsmd stops cleanly"
tap_done
