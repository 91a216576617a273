#!/bin/bash
# Counts are true: `hsm status` and `hsm metrics` (hsm_files per state) count exactly
# the files `hsm state` reports in each state, for every file, after archives,
# releases, interactive recalls (a read), batch recalls (hsm recall), peer recalls,
# prefetches and restarts. "archived" means a verified copy of the current content is
# in the store: a file recalled from a peer that never archived it is resident.
#  - one site: resident, archived, stub, read back, hsm recall, modified after
#    archive; then hsmd restarted;
#  - two sites a, b (shared store): b reads, recalls and prefetches a's files that
#    were never archived (resident at b) and one a archived (archived at b); then b
#    restarted.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root

# counts_diff SOCK VOLPATH: prints nothing when the counts of `hsm status --json`
# and of `hsm metrics` equal the per-state totals of `hsm state --json` over every
# regular file of VOLPATH (found by find, which never opens a file); else what
# differs. The volume must be the site's only one.
counts_diff() {
	local sock=$1 vol=$2
	find "$vol" -type f -print0 >"$T/files.lst"
	{
		if [ -s "$T/files.lst" ]; then
			xargs -0 "$HSM_BIN" -s "$sock" state --json <"$T/files.lst"
		fi
	} >"$T/state.json" 2>"$T/state.err"
	timeout 30 "$HSM_BIN" -s "$sock" status --json >"$T/status.json" 2>&1
	timeout 30 "$HSM_BIN" -s "$sock" metrics >"$T/metrics.txt" 2>&1
	python3 - "$T/state.json" "$T/status.json" "$T/metrics.txt" "$T/files.lst" <<'EOF'
import json, re, sys
want = {"resident": 0, "archived": 0, "stub": 0}
nfiles = len([p for p in open(sys.argv[4], "rb").read().split(b"\0") if p])
items = 0
for line in open(sys.argv[1]):
    o = json.loads(line)
    if o.get("type") != "item":
        continue
    items += 1
    if not o.get("ok"):
        print("hsm state failed: %s" % line.strip())
        continue
    s = o["state"]
    if s not in want:
        print("%s is %s" % (o["path"], s))
        continue
    want[s] += 1
if items != nfiles:
    print("hsm state answered %d of %d files" % (items, nfiles))
st = None
for line in open(sys.argv[2]):
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if isinstance(o, dict) and "volumes" in o:
        st = o
if st is None or len(st["volumes"]) != 1:
    print("no usable status: %s" % open(sys.argv[2]).read()[:300])
    sys.exit(0)
got = st["volumes"][0]["files"]
for s in want:
    if got.get(s) != want[s]:
        print("status says %s=%s, hsm state counts %d" % (s, got.get(s), want[s]))
met = {}
for line in open(sys.argv[3]):
    m = re.match(r'hsm_files\{volume="[^"]*",state="(\w+)"\} (\d+)$', line.strip())
    if m:
        met[m.group(1)] = int(m.group(2))
for s in want:
    if met.get(s) != want[s]:
        print("metrics say hsm_files{state=%s}=%s, hsm state counts %d" % (s, met.get(s), want[s]))
EOF
}

# counts_agree SOCK VOLPATH: 0 when counts_diff prints nothing.
counts_agree() { [ -z "$(counts_diff "$1" "$2")" ]; }

# check_counts SOCK VOLPATH WHAT: one test; notes and recalls settle on the loop, so
# it waits up to 10 s for agreement and shows the last difference if there is none.
check_counts() {
	local sock=$1 vol=$2 what=$3
	ok 'wait_for 10 counts_agree "$sock" "$vol"' "$what: status and metrics agree with hsm state" \
		"$(counts_diff "$sock" "$vol")"
}

# state_count SOCK VOLPATH STATE: the number of files hsm state reports in STATE.
state_count() {
	find "$2" -type f -print0 | xargs -0 "$HSM_BIN" -s "$1" state --json 2>/dev/null |
		grep -c "\"state\":\"$3\""
}

# ---------------------------------------------------------------- one site
mkvol vol ext4 256M
V="$T/vol"
HSM_STATE="$T/state1" hsmd_conf "$V"
hsmd_start || bail_out "hsmd did not start"
mkdir -p "$V/d"
for n in res arc stub readback recalled modified; do
	mkrand "$V/d/$n" 300000
done
w_read=$(sha "$V/d/readback")
w_rec=$(sha "$V/d/recalled")
ok 'wait_state "$V/d/res" resident' "one site: a new file is resident"
for n in arc stub readback recalled modified; do
	hsm archive "$V/d/$n" >/dev/null
done
for n in stub readback recalled; do
	hsm release "$V/d/$n" >/dev/null
done
is "$(state_of "$V/d/readback")" stub "one site: released files are stubs"
check_counts "$HSMD_SOCK" "$V" "one site, after archive and release"
is "$(sha "$V/d/readback")" "$w_read" "one site: a read recalls the stub from the store"
is "$(state_of "$V/d/readback")" archived "one site: recalled from the store, it is archived"
ok_cmd "one site: hsm recall" hsm recall "$V/d/recalled"
is "$(sha "$V/d/recalled")" "$w_rec" "one site: hsm recall brought the bytes back"
is "$(state_of "$V/d/recalled")" archived "one site: batch-recalled, it is archived"
VT=10 vt dd if=/dev/urandom of="$V/d/modified" bs=4096 count=1 conv=notrunc 2>/dev/null
ok 'wait_state "$V/d/modified" resident' \
	"one site: written after its archive, it is resident"
check_counts "$HSMD_SOCK" "$V" "one site, after recalls and a write"
is "$(state_count "$HSMD_SOCK" "$V" archived)" 3 "one site: three files are archived"
ok 'hsmd_stop' "one site: hsmd stops"
ok 'hsmd_start' "one site: hsmd starts again"
wait_scan
check_counts "$HSMD_SOCK" "$V" "one site, after a restart"
hsmd_stop

# ---------------------------------------------------------------- two sites
P="$T/policy.conf"
cat >"$P" <<'POL'
prefetch at b where path ~ "hot/**"
scan every 1h
POL
export SITES_SITE_EXTRA="policy = $P"
sites_init a b
site_start a || bail_out "site a did not start"
site_start b || bail_out "site b did not start"
A=$(site_vol a)
B=$(site_vol b)
SA=$(site_sock a)
SB=$(site_sock b)

mkdir -p "$A/d" "$A/hot"
for n in peerread peerrecall archived stays; do
	mkrand "$A/d/$n" 200000
done
mkrand "$A/hot/pre" 200000
w_pr=$(sha "$A/d/peerread")
w_arc=$(sha "$A/d/archived")
ok_cmd "two sites: a archives one file" site_hsm a archive "$A/d/archived"
is_state() { [ "$(site_state "$1" "$2")" = "$3" ]; }
ok 'wait_for 10 is_state b "$B/d/stays" stub' "two sites: a's files are stubs at b"
ok 'wait_for 20 is_state b "$B/hot/pre" resident' \
	"two sites: the prefetched file is resident at b (never archived)" \
	"$(site_state b "$B/hot/pre")"
is "$(sha "$B/d/peerread")" "$w_pr" "two sites: b reads a's never-archived file"
is "$(site_state b "$B/d/peerread")" resident \
	"two sites: recalled from a and never archived: resident at b"
ok_cmd "two sites: hsm recall at b" site_hsm b recall "$B/d/peerrecall"
is "$(site_state b "$B/d/peerrecall")" resident \
	"two sites: batch-recalled from a, never archived: resident at b"
b_knows_archived() { [ "$(site_state b "$B/d/archived" archived_version)" = 1 ]; }
ok 'wait_for 10 b_knows_archived' \
	"two sites: b learns that a archived a file"
is "$(sha "$B/d/archived")" "$w_arc" "two sites: b reads the file a archived"
is "$(site_state b "$B/d/archived")" archived \
	"two sites: its version is in the store: archived at b"
like "$(site_hsm b metrics)" "hsm_recalls_from_peers_total [1-9]" \
	"two sites: b recalled from its peer"
check_counts "$SB" "$B" "two sites, at b"
check_counts "$SA" "$A" "two sites, at a"
is "$(state_count "$SB" "$B" archived)" 1 "two sites: at b exactly one file is archived"
out=$(site_hsm b release "$B/d/peerread" 2>&1)
like "$out" "not archived" "two sites: b refuses to release the peer-recalled file"
site_stop b
site_start b || bail_out "site b did not restart"
HSMD_SOCK=$SB wait_scan
check_counts "$SB" "$B" "two sites, at b after a restart"
tap_done
