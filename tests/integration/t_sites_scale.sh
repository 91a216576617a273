#!/bin/bash
# 10,000 files created at site a (in 100 directories, with a burst of renames and
# deletes mixed in) are all stubs at site b: none lost, none duplicated, none left
# over, every size and mtime right; b's feed carries each entry once. Then 1000 of
# them are read at b back to back: every one reads right.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root
[ -n "${KEEP_T:-}" ] && echo "# T=$T"

N=${SCALE_FILES:-10000}
sites_init a b
site_start a || bail_out "site a did not start"
site_start b || bail_out "site b did not start"
A=$(site_vol a)
B=$(site_vol b)

t0=$(date +%s.%N)
vsh 'cd "$1" && for d in $(seq -w 0 99); do mkdir "d$d"; done &&
	for ((i = 1; i <= $2; i++)); do printf -v d "%02d" $((i % 100)); echo -n "$i" >"d$d/f$i"; done' \
	"$A" "$N"
# renames and deletes in the same burst
vsh 'cd "$1" && for i in $(seq 1 50); do mv "d01/f$((i * 100 + 1))" "d02/moved$i"; done &&
	for i in $(seq 1 50); do rm "d03/f$((i * 100 + 3))"; done' "$A"
expect=$((N - 50))
t1=$(date +%s.%N)
tap_diag "created $N files at a in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b - a}') s"

count_b() { find "$B" -type f | wc -l; }
for ((i = 0; i < 1200; i++)); do
	[ "$(count_b)" -ge "$expect" ] && break
	sleep 0.25
done
t2=$(date +%s.%N)
tap_diag "b had them all $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.1f", b - a}') s after the last change at a"
sleep 2
(cd "$A" && find . -type f -printf '%p %s %T@\n' | sort) >"$T/a.list"
(cd "$B" && find . -type f -printf '%p %s %T@\n' | sort) >"$T/b.list"
is "$(wc -l <"$T/a.list")" "$expect" "a holds $expect files"
is "$(wc -l <"$T/b.list")" "$expect" "b holds $expect files, none lost nor duplicated"
ok 'cmp -s "$T/a.list" "$T/b.list"' "the same names, sizes and mtimes at both sites" \
	"$(diff "$T/a.list" "$T/b.list" | head -10)"
site_hsm b state --json -r "$B" >"$T/b.state" 2>&1
is "$(grep -c '"state":"stub"' "$T/b.state")" "$expect" "every file at b is a stub"
is "$(find "$B" -type f -printf '%b\n' | sort -u | tr '\n' ' ')" "0 " "no stub at b holds data"
is "$(sha "$B/d02/moved7")" "$(sha "$A/d02/moved7")" "a renamed file reads right at b"
ok '! [ -e "$B/d03/f303" ]' "a deleted file is gone at b"

# First reads of 1000 stubs back to back: two peer requests each, well past any
# request-rate burst a healthy peer should hit; every one must read right (once, a
# burst of 429 answers from a's rate limit failed them with EIO).
bad=$(vsh 'cd "$1" && n=0; for i in $(seq 1000 1999); do printf -v d "%02d" $((i % 100));
	[ -e "d$d/f$i" ] || continue; [ "$(cat "d$d/f$i")" = "$i" ] || n=$((n + 1)); done; echo $n' "$B")
is "$bad" 0 "1000 stubs read back to back at b: all right"
is "$(site_hsm b metrics | awk '$1 == "hsm_recalls_failed_total" {print $2}')" 0 \
	"no recall failed at b"

tap_done
