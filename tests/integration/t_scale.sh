#!/bin/bash
# 10,000 small files (1-8 KiB of random bytes) on ext4 and xfs: archive -r,
# release -r, then a batch `hsm recall -r -j 8`: the summary says 10000 done,
# 0 failed, and every file's sha256 matches the list made before archiving.
: "${HSM_IT_LIMIT:=600}" # 10,000 files twice take 2-3 minutes
. "$(dirname "$0")/lib.sh"
it_setup_root

NFILES=10000

# summary_of FILE VERB: the "VERB: N done, M failed..." line
summary_of() {
	grep -E "^$2: [0-9]+ done" "$1" | tail -n 1
}

# count_states DIR: "STATE=N ..." over the files under DIR, from hsm state -r --json
count_states() {
	hsm state -r --json "$1" 2>&1 | python3 -c '
import collections, json, sys
c = collections.Counter()
for line in sys.stdin:
    try:
        o = json.loads(line)
    except ValueError:
        c["unparsable"] += 1
        continue
    if o.get("type") == "item":
        c[o.get("state") if o.get("ok") else "failed"] += 1
print(" ".join("%s=%d" % kv for kv in sorted(c.items())))'
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 1G
	V="$T/vol-$fs"
	D="$V/many"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts" || continue

	VT=300 vt python3 - "$D" "$NFILES" "$T/sums-$fs" <<'EOF'
import hashlib, os, random, sys
root, n, sums = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rnd = random.Random()
with open(sums, "w") as out:
    for i in range(n):
        d = os.path.join(root, "d%03d" % (i // 100))
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "f%05d" % i)
        data = os.urandom(rnd.randint(1024, 8192))
        with open(p, "wb") as f:
            f.write(data)
        out.write("%s  %s\n" % (hashlib.sha256(data).hexdigest(), p))
EOF
	is "$(find "$D" -type f | wc -l)" "$NFILES" "$fs: $NFILES files written"

	s=$SECONDS
	HSM_TIMEOUT=900 hsm archive -r "$D" >"$T/archive.out" 2>&1
	rc=$?
	tap_diag "$fs: archive -r took $((SECONDS - s)) s"
	is "$rc" 0 "$fs: archive -r exits 0" "$(tail -n 5 "$T/archive.out")"
	like "$(summary_of "$T/archive.out" archive)" "^archive: $NFILES done, 0 failed" \
		"$fs: archive summary: $NFILES done, 0 failed"

	s=$SECONDS
	HSM_TIMEOUT=900 hsm release -r "$D" >"$T/release.out" 2>&1
	rc=$?
	tap_diag "$fs: release -r took $((SECONDS - s)) s"
	is "$rc" 0 "$fs: release -r exits 0" "$(tail -n 5 "$T/release.out")"
	like "$(summary_of "$T/release.out" release)" "^release: $NFILES done, 0 failed" \
		"$fs: release summary: $NFILES done, 0 failed"
	is "$(find "$D" -type f -printf '%b\n' | awk -v m="$STUB_MAX_BLOCKS" '$1 > m' | wc -l)" 0 \
		"$fs: no released file has data blocks"
	is "$(count_states "$D")" "stub=$NFILES" "$fs: hsm state -r: all $NFILES are stubs"
	is "$(status_get volumes | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["files"]["stub"])' 2>&1)" \
		"$NFILES" "$fs: hsm status counts $NFILES stubs"

	s=$SECONDS
	HSM_TIMEOUT=900 hsm recall -r -j 8 "$D" >"$T/recall.out" 2>&1
	rc=$?
	secs=$((SECONDS - s))
	tap_diag "$fs: recall -r -j 8 of $NFILES stubs took $secs s"
	is "$rc" 0 "$fs: recall -r -j 8 exits 0" "$(tail -n 5 "$T/recall.out")"
	like "$(summary_of "$T/recall.out" recall)" "^recall: $NFILES done, 0 failed" \
		"$fs: recall summary: $NFILES done, 0 failed"
	is "$(count_states "$D")" "archived=$NFILES" "$fs: hsm state -r: all $NFILES are archived"
	VT=300 vt sha256sum --quiet -c "$T/sums-$fs" >"$T/check.out" 2>&1
	rc=$?
	is "$rc:$(grep -c 'FAILED' "$T/check.out")" "0:0" "$fs: every sha256 matches" \
		"$(head -n 5 "$T/check.out")"

	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
