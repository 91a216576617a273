#!/bin/bash
# The policy engine at one site (docs/policy.md, issue "Policy engine"):
#  - hsm policy check: errors with FILE:LINE:COL and exit 1, warnings for shadowed
#    rules, exit 0 on a good file; hsmd refuses to start on a broken policy;
#  - an archive rule archives matching files and only them (dry run first: it lists
#    them and changes nothing); files written later are archived without a pass;
#  - exclude: an excluded file is never archived, not even by hand;
#  - hsm policy explain names the rule and the values compared;
#  - usage above the high watermark: a pass releases down to the low mark, oldest
#    atime first, never the pinned or the dirty file;
#  - a bandwidth limit of 4 MB/s on archive uploads holds by hsmd's own record of the
#    starts (never more than one burst ahead of the rate, at least a quarter of it),
#    and a reader's recall meanwhile finishes while the archives queued before it wait;
#  - a broken policy on reload (hsm policy reload, SIGHUP) keeps the old one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pace.sh"
it_setup_root

P="$T/policy.conf"

# policy TEXT: writes the policy file.
policy() { printf '%s\n' "$1" >"$P"; }

is_state() { [ "$(state_of "$1")" = "$2" ]; }

# used_pct: the volume's usage as df computes it (used / (used + available)).
used_pct() {
	df --output=pcent "$V" | tail -1 | tr -dc 0-9
}

# ---- check, offline
policy 'exclude "*.tmp"
archive where name ~ "*.dat"
archive where name ~ "*.dat" and size > 1M
release watermark 90% 70% where mtime > 10'
out=$("$HSM_BIN" policy check "$P" 2>&1)
rc=$?
is "$rc" 1 "check: a file with an error exits 1" "$out"
like "$out" "policy.conf:4:[0-9]+: error:" "check: the error has FILE:LINE:COL"
like "$out" "unit" "check: the error says what was expected"
policy 'exclude "*.tmp"
archive where name ~ "*.dat"
archive where name ~ "*.dat"
scan every 1h'
out=$("$HSM_BIN" policy check "$P" 2>&1)
is "$?" 0 "check: warnings only exits 0" "$out"
like "$out" "policy.conf:3:[0-9]+: warning:.*shadow" "check: a shadowed rule is warned about"
out=$("$HSM_BIN" policy check -v "$P" 2>&1)
like "$out" "line 2: archive" "check -v prints the statements as understood"

# ---- hsmd refuses a broken policy at start
mkvol vol ext4 256M
V="$T/vol"
hsmd_conf "$V"
sed -i "/^\[site\]/a policy = $P" "$HSMD_CONF"
policy 'archive where size > 10 parsecs'
if hsmd_start 2>/dev/null; then
	tap_not_ok "hsmd refuses to start with a broken policy"
	hsmd_stop
else
	tap_ok "hsmd refuses to start with a broken policy"
fi
like "$(tail -5 "$HSMD_LOG")" "policy.conf:1:[0-9]+: error" "the log says where the error is"

# ---- archive rule, dry run, exclude
policy 'exclude "*.tmp"
scan every 1h'
mkdir -p "$V/d"
for f in a.dat d/b.dat c.txt d/e.tmp x.tmp.txt; do mkrand "$V/$f" 300000; done
ok 'hsmd_start' "hsmd starts with the policy" || bail_out "hsmd did not start"
wait_scan
# Paused, the passes that a reload starts queue jobs but run none: the dry run below
# then sees the files as they are, and shows it queues nothing of its own.
ok_cmd "policy pause" hsm policy pause
policy 'exclude "*.tmp"
archive where name ~ "*.dat"
scan every 1h'
ok_cmd "reload with an archive rule" hsm policy reload
sleep 2
q0=$(hsm policy status --json | json_get jobs.archive.queued)
out=$(hsm policy run --dry-run --json)
is "$?" 0 "policy run --dry-run works" "$out"
is "$(printf '%s\n' "$out" | json_get totals.archive.files)" 2 "dry run: two files to archive"
like "$(printf '%s\n' "$out" | grep '"action":"archive"' | sort | tr '\n' ' ')" \
	"vol/a\.dat.*vol/d/b\.dat" "dry run: it lists a.dat and d/b.dat, nothing else"
is "$(hsm policy status --json | json_get jobs.archive.queued)" "$q0" "dry run: queues nothing"
is "$(state_of "$V/a.dat")" resident "paused: nothing archived yet"
out=$(hsm policy run --dry-run)
like "$out" "archive +2 files" "policy run --dry-run prints the totals"
ok_cmd "policy resume" hsm policy resume
out=$(hsm policy run)
is "$?" 0 "policy run works" "$out"
ok 'wait_for 20 is_state "$V/a.dat" archived' "archive rule: a.dat archived"
ok 'wait_for 20 is_state "$V/d/b.dat" archived' "archive rule: d/b.dat archived"
is "$(state_of "$V/c.txt")" resident "archive rule: c.txt not archived"
is "$(state_of "$V/x.tmp.txt")" resident "archive rule: x.tmp.txt not archived"
is "$(state_of "$V/d/e.tmp")" resident "exclude: e.tmp not archived"
out=$(hsm archive "$V/d/e.tmp" 2>&1)
is "$?" 1 "exclude: hsm archive of an excluded file fails" "$out"
like "$out" "excluded by the policy \(line 1" "exclude: the message names the rule"
is "$(state_of "$V/d/e.tmp")" resident "exclude: still not archived"

# on change: no pass needed
mkrand "$V/later.dat" 100000
ok 'wait_for 15 is_state "$V/later.dat" archived' "a file written later is archived (journal)"
mkrand "$V/later.tmp" 100000
sleep 3
is "$(state_of "$V/later.tmp")" resident "a later excluded file is not"

# ---- explain
out=$(hsm policy explain "$V/a.dat")
is "$?" 0 "policy explain works" "$out"
like "$out" "line 2" "explain names the deciding rule's line"
like "$out" "a\.dat" "explain shows the value compared"
out=$(hsm policy explain --json "$V/d/e.tmp" 2>&1 || hsm --json policy explain "$V/d/e.tmp")
is "$(printf '%s\n' "$out" | json_get decision.exclude)" 1 "explain --json: excluded by line 1"

# ---- watermark release, oldest atime first, pinned and dirty untouched
policy 'exclude "*.tmp"
archive where name ~ "*.dat" or name ~ "*.big"
scan every 1h'
ok_cmd "reload the policy" hsm policy reload
mkdir -p "$V/w"
for i in $(seq -w 1 16); do mkrand "$V/w/f$i.big" 9000000; done
sum03=$(sha "$V/w/f03.big")
sum04=$(sha "$V/w/f04.big")
ok 'wait_for 60 is_state "$V/w/f16.big" archived' "the big files are archived"
for i in $(seq -w 1 16); do wait_for 30 is_state "$V/w/f$i.big" archived; done
# no archive rule from here on: a modified file stays dirty
policy 'exclude "*.tmp"
scan every 1h'
ok_cmd "reload without archive rules" hsm policy reload
ok_cmd "pin the oldest" hsm pin "$V/w/f01.big"
printf 'x' >>"$V/w/f02.big" # dirty: modified since archived
sleep 1
for i in $(seq -w 1 16); do touch -a -d "$((40 - 10#$i)) days ago" "$V/w/f$i.big"; done
sync
before=$(used_pct)
tap_diag "usage before release: $before %"
high=$((before - 5))
low=$((before - 30))
[ "$low" -lt 5 ] && low=5
policy "exclude \"*.tmp\"
release watermark $high% $low% order atime where name ~ \"*.big\"
scan every 1h"
ok_cmd "reload with a release rule ($high% / $low%)" hsm policy reload
out=$(hsm policy run --dry-run --json)
rel=$(printf '%s\n' "$out" | json_get totals.release.files)
ok '[ "${rel:-0}" -gt 0 ]' "dry run: some files to release ($rel)"
ok_cmd "policy run" hsm policy run
at_low() { [ "$(used_pct)" -le "$low" ]; }
ok 'wait_for 60 at_low' "release: usage at or below the low mark $low%"
tap_diag "usage after release: $(used_pct) %"
is "$(state_of "$V/w/f01.big")" archived "release: the pinned file is resident"
is "$(state_of "$V/w/f02.big")" resident "release: the dirty file is resident"
stubs=""
for i in $(seq -w 3 16); do
	[ "$(state_of "$V/w/f$i.big")" = stub ] && stubs+="$i "
done
tap_diag "released: $stubs"
want=""
n=$(echo $stubs | wc -w)
for i in $(seq 3 $((n + 2))); do want+="$(printf %02d "$i") "; done
is "$stubs" "$want" "release: the oldest atimes went first ($n files)"
ok '[ "$n" -lt 14 ]' "release: it stopped at the low mark (not everything)"
is "$(sha "$V/w/f03.big")" "$sum03" "a released file reads back intact"

# ---- bandwidth limit on archive uploads
# The files exist before the rule that archives them: the pass started by policy run
# is what queues them all. The pace is judged from hsmd's own record of the starts
# (pace.sh), not a stopwatch here: load only slows a transfer, so an upper bound
# (never above the limit plus one burst) holds anywhere, and the lower bound is
# generous (a quarter of the limit) only to catch a limiter far stricter than asked.
mkdir -p "$V/bw"
for i in $(seq -w 1 40); do mkrand "$V/bw/f$i.bw" 1048576; done
sleep 2
policy 'archive where name ~ "*.bw"
limit store 4MB/s
scan every 1h'
ok_cmd "reload with limit store 4MB/s" hsm policy reload
archived() { hsm policy status --json | json_get jobs.archive.done; }
d0=$(archived)
ok_cmd "policy run" hsm policy run
# A reader never queues behind policy work: a stub read while the archives wait on the
# limit is recalled while archives queued before it still wait. 40 MiB at 4 MB/s keep
# the queue busy for ten seconds of hsmd's pacing; a reader served after the queue
# (behind it) would find it empty when done.
# jobs_now: "QUEUED DONE IN_FLIGHT" of the archive class, from one status answer.
jobs_now() {
	hsm policy status --json | python3 -c '
import json, sys
o = json.loads(sys.stdin.readline())
o = o.get("result", o)
a = o["jobs"]["archive"]
print(a["queued"], a["done"], o["in_flight"])'
}
read -r q0 a0 f0 < <(jobs_now)
tap_diag "before the read: $q0 archives queued, $((a0 - d0)) done, $f0 in flight"
ok '[ "${q0:-0}" -ge 1 ]' "the paced archives are queued when the reader starts ($q0)"
rsum=$(sha "$V/w/f04.big")
read -r q1 a1 f1 < <(jobs_now)
tap_diag "when the read was done: $q1 archives still queued, $((a1 - d0)) done, $f1 in flight"
ok '[ "${q1:-0}" -ge 1 ] && [ "$a1" -lt $((d0 + 40)) ]' \
	"a reader's recall finishes before the policy jobs queued ahead of it ($q1 still queued)"
is "$rsum" "$sum04" "the stub read back intact"
is "$(state_of "$V/w/f04.big")" archived "the read stub is resident again"
all_archived() { [ "$(archived)" -ge $((d0 + 40)) ]; }
ok 'wait_for 120 all_archived' "the 40 paced archives are done"
for i in $(seq -w 1 40); do wait_for 10 is_state "$V/bw/f$i.bw" archived; done
is "$(for i in $(seq -w 1 40); do state_of "$V/bw/f$i.bw"; done | sort -u)" archived \
	"all 40 files archived"
read -r n excess burst avg < <(hsm policy status --json | pace_stats store 4000000 40 1048576)
tap_diag "hsmd's record: $n paced starts, at most $excess bytes ahead of 4 MB/s (burst $burst), $avg B/s first to last"
is "$n" 40 "limit store 4MB/s: hsmd records the 40 archives as paced starts"
ok '[ "$burst" -gt 0 ] && [ "$burst" -le 1000000 ]' "the burst is at most a quarter second of the rate ($burst)"
ok '[ "$burst" -gt 0 ] && [ "$excess" -le $((burst + 1)) ]' \
	"limit 4MB/s: no stretch of starts ran ahead of the rate by more than one burst ($excess <= $burst bytes)"
ok '[ "$avg" -ge 1000000 ]' "limit 4MB/s: the archives kept at least a quarter of the rate ($avg B/s)"

# ---- a broken policy on reload keeps the old one
policy 'archive where name ~ "*.bw"
limit store 4MB/s
archive where size >> 3'
out=$(hsm policy reload 2>&1)
is "$?" 1 "reload of a broken policy fails" "$out"
like "$out" "policy.conf:3:[0-9]+: error" "the reload error says where"
like "$(hsm policy status --json | json_get last_reload_error)" "policy.conf:3" \
	"policy status keeps the reload error"
like "$(hsm policy explain "$V/bw/f01.bw")" "line 1" "the old policy is still in force"
kill -HUP "$HSMD_PID"
ok 'wait_for 10 grep -q "policy.conf:3:.*still running the configuration loaded before" "$HSMD_LOG"' \
	"SIGHUP with a broken policy: logged, old kept"
mkrand "$V/bw/after.bw" 1000
ok 'wait_for 15 is_state "$V/bw/after.bw" archived' "the old policy still runs"
policy 'archive where name ~ "*.none"'
kill -HUP "$HSMD_PID"
ok 'wait_for 10 grep -q "reload: policy reloaded" "$HSMD_LOG"' "SIGHUP with a good policy reloads"

ok 'hsmd_stop' "hsmd stops cleanly"
tap_done
