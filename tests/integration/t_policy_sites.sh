#!/bin/bash
# The policy engine across sites (docs/policy.md, issue "Policy engine"): two sites a
# and b in their own network namespaces over veth, mutual TLS, one file:// store, the
# same policy file at both:
#  - exclude: files matching an exclude rule written at a never appear at b, and a file
#    renamed to an excluded name leaves b's namespace; they are never archived either;
#    a stub renamed to an excluded name does not take the file away from its holder;
#  - prefetch at b: matching files written at a become resident at b without any read;
#    others stay stubs;
#  - place at b: a file written at a under the placed path ends up owned by b, at both
#    sites, with its bytes intact at both;
#  - a limit of 2 MB/s on traffic from peer a holds for b's prefetches, by b's own
#    record of the starts: never more than one burst ahead, at least a quarter of it.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
. "$(dirname "$0")/pace.sh"
it_setup_root

is_state() { [ "$(site_state "$1" "$2")" = "$3" ]; }
owner_is() { [ "$(site_state "$1" "$2" owner)" = "$3" ]; }
exists() { [ -e "$1" ]; }
# prefetched FILE: b holds FILE's data (resident, or archived once a's archive reached it).
prefetched() { case $(site_state b "$1") in archived | resident) return 0 ;; esac; return 1; }

P="$T/policy.conf"
cat >"$P" <<'POL'
# the same policy at both sites
exclude "*.tmp", "~*"
archive where name ~ "*.arc"
prefetch at b where path ~ "hot/**"
place at b where path ~ "bplace/**"
limit peer a 2MB/s
scan every 1h
POL
ok_cmd "the policy checks clean" "$HSM_BIN" policy check --site a --site b "$P"
export SITES_SITE_EXTRA="policy = $P"
sites_init a b
site_start a || bail_out "site a did not start"
site_start b || bail_out "site b did not start"
A=$(site_vol a)
B=$(site_vol b)

mkdir -p "$A/hot/sub" "$A/cold" "$A/bplace"
mkrand "$A/hot/sub/h1" 2000000
mkrand "$A/hot/h2" 500000
mkrand "$A/cold/c1" 700000
mkrand "$A/cold/scratch.tmp" 100000
mkrand "$A/cold/~lock" 1000
mkrand "$A/cold/keep" 1000
mkrand "$A/bplace/p1" 1500000
mkrand "$A/x.arc" 300000
sh1=$(sha "$A/hot/sub/h1")
shp=$(sha "$A/bplace/p1")

ok 'wait_for 10 exists "$B/cold/c1"' "a plain file appears at b"
ok 'wait_for 10 exists "$B/cold/keep"' "the last file written appears at b"
is "$(site_state b "$B/cold/c1")" stub "the plain file is a stub at b"
sleep 1
ok '! [ -e "$B/cold/scratch.tmp" ]' "exclude: *.tmp never appears at b"
ok '! [ -e "$B/cold/~lock" ]' "exclude: ~* never appears at b"

# prefetch
ok 'wait_for 20 prefetched "$B/hot/sub/h1"' "prefetch: hot/sub/h1 resident at b without a read"
ok 'wait_for 20 prefetched "$B/hot/h2"' "prefetch: hot/h2 resident at b"
ok '[ "$(stat -c %b "$B/hot/sub/h1")" -gt 0 ]' "prefetch: h1 has its blocks at b"
is "$(site_state b "$B/cold/c1")" stub "prefetch: cold/c1 is still a stub at b"
is "$(sha "$B/hot/sub/h1")" "$sh1" "prefetch: h1's bytes at b are right"
is "$(site_state a "$A/hot/sub/h1" owner)" a "prefetch does not move ownership"

# prefetch traffic from a is paced at 2 MB/s: 16 files of 1 MiB, judged from b's own
# record of the starts it let through (pace.sh), not a stopwatch here: never more than
# one burst ahead of the rate, and at least a quarter of it (a limiter far stricter
# than asked). The files arrive at b as a writes them; arriving slower than 2 MB/s
# would only lower the pace, and 16 MiB written at a take far less than the 32 s a
# quarter of the rate allows.
mkdir -p "$A/hot/bw"
pdone() { site_hsm b policy status --json | json_get jobs.prefetch.done; }
d0=$(pdone)
for i in $(seq -w 1 16); do mkrand "$A/hot/bw/f$i" 1048576; done
all_prefetched() { [ "$(pdone)" -ge $((d0 + 16)) ]; }
ok 'wait_for 120 all_prefetched' "the 16 paced prefetches are done at b"
read -r n excess burst avg < <(site_hsm b policy status --json | pace_stats a 2000000 16 1048576)
tap_diag "b's record: $n paced starts from a, at most $excess bytes ahead of 2 MB/s (burst $burst), $avg B/s first to last"
is "$n" 16 "limit peer a 2MB/s: b records the 16 prefetches as paced starts"
ok '[ "$burst" -gt 0 ] && [ "$burst" -le 500000 ]' "the burst is at most a quarter second of the rate ($burst)"
ok '[ "$burst" -gt 0 ] && [ "$excess" -le $((burst + 1)) ]' \
	"limit peer a 2MB/s: no stretch of prefetches ran ahead by more than one burst ($excess <= $burst bytes)"
ok '[ "$avg" -ge 500000 ]' "limit peer a 2MB/s: the prefetches kept at least a quarter of the rate ($avg B/s)"
is "$(for i in $(seq -w 1 16); do site_state b "$B/hot/bw/f$i"; done | grep -c stub)" 0 \
	"every paced file was prefetched"

# placement
ok 'wait_for 30 owner_is b "$B/bplace/p1" b' "place: b owns bplace/p1 (at b)"
ok 'wait_for 15 owner_is a "$A/bplace/p1" b' "place: a sees b as the owner"
is "$(sha "$B/bplace/p1")" "$shp" "place: the bytes at b are right"
is "$(sha "$A/bplace/p1")" "$shp" "place: the bytes at a are right"
is "$(site_state a "$A/cold/c1" owner)" a "place: other files keep their owner"

# archive and exclude
ok 'wait_for 20 is_state a "$A/x.arc" archived' "archive rule: x.arc archived at a"
is "$(site_state a "$A/cold/scratch.tmp")" resident "exclude: scratch.tmp is not archived"
out=$(site_hsm a archive "$A/cold/scratch.tmp" 2>&1)
is "$?" 1 "exclude: hsm archive refuses it" "$out"

# renamed to an excluded name: it leaves b
mv "$A/cold/keep" "$A/cold/keep.tmp"
ok 'wait_for 10 test ! -e "$B/cold/keep"' "a file renamed to an excluded name leaves b"
ok '! [ -e "$B/cold/keep.tmp" ]' "and does not appear under the excluded name"
ok '[ -e "$A/cold/keep.tmp" ]' "it stays at a"

# a stub renamed to an excluded name must not withdraw the file: its data is at a
shc=$(sha "$A/cold/c1")
is "$(site_state b "$B/cold/c1")" stub "cold/c1 is still a stub at b"
mv "$B/cold/c1" "$B/cold/c1.tmp"
sleep 3
ok '[ -e "$A/cold/c1" ]' "a stub renamed to an excluded name at b: a keeps the file"
is "$(sha "$A/cold/c1")" "$shc" "and its bytes"
is "$(sha "$B/cold/c1.tmp")" "$shc" "the renamed stub at b still reads right"

ok 'site_stop a' "site a stops cleanly"
ok 'site_stop b' "site b stops cleanly"
tap_done
