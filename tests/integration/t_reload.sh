#!/bin/bash
# Reloading hsmd.conf (SIGHUP, systemctl reload): all of the file or none of it.
#  - hsmd -n says, for each key changed since the running configuration, whether a
#    reload applies it in place, with a new worker, or only a restart does;
#  - live keys (log level, guard_hold, the policy file) apply without a new worker;
#  - a broken file or a change that needs a restart applies nothing, hsmd runs on;
#  - a new volume and a new store apply with a new worker: a stub read across that
#    restart gets its bytes; the new volume is managed, and guarded while hsmd is down.
. "$(dirname "$0")/lib.sh"
it_setup_root

mkvol vol ext4 256M
mkvol vol2 xfs 512M
V="$T/vol"
W="$T/vol2"
P1="$T/p1.policy"
P2="$T/p2.policy"
echo 'exclude "*.tmp"' >"$P1"
echo 'exclude "*.junk"' >"$P2"
HSM_SITE_EXTRA="policy = $P1" hsmd_conf "$V"
ok 'hsmd_start' "hsmd starts" || bail_out "no daemon"
w0=$(worker_pid)
g0=$(guard_pid)

check() { "$HSMD_BIN" -n -c "$HSMD_CONF" 2>&1; }
hup() { kill -HUP "$HSMD_PID"; }
# reloads: how many reloads hsmd has finished (applied or refused) so far
reloads() { grep -cE "reload: (.* applied|nothing of|.*still running the configuration)" "$HSMD_LOG"; }
# hup_wait: SIGHUP, then waits until hsmd logged the reload's outcome
reloads_above() { [ "$(reloads)" -gt "$1" ]; }
hup_wait() {
	local n
	n=$(reloads)
	hup
	wait_for 30 reloads_above "$n"
}
policy_file_is() { [ "$(hsm policy status --json | json_get file)" = "$1" ]; }
# new_worker OLD: a worker runs and it is not OLD
new_worker() { local w; w=$(worker_pid); [ -n "$w" ] && [ "$w" != "$1" ]; }

mkrand "$V/a" 3000000
sa=$(sha "$V/a")
ok_cmd "archive and release a" archive_release "$V/a"

out=$(check)
like "$out" "configuration OK" "hsmd -n: the file is good"
like "$out" "same as the running configuration" "hsmd -n: nothing changed yet"

# ---- live keys
sed -i "s/^log_level = debug/log_level = info/; s|^policy = .*|policy = $P2\nguard_hold = 7|" \
	"$HSMD_CONF"
out=$(check)
like "$out" "site.log_level: applied by a reload$" "hsmd -n: the log level is live" "$out"
like "$out" "site.policy: applied by a reload$" "hsmd -n: another policy file is live"
like "$out" "site.guard_hold: applied by a reload$" "hsmd -n: guard_hold is live"
like "$out" "applies all of it in place" "hsmd -n: no new worker needed"
ok 'hup_wait' "reload of live keys finishes"
is "$(worker_pid)" "$w0" "live keys: the same worker"
ok 'wait_for 10 policy_file_is "$P2"' "live keys: the new policy file is in force"
ok 'wait_for 10 grep -qF "reload: guarding 1 volume(s) (hold 7 s)" "$HSMD_LOG"' \
	"live keys: the guard took the new hold time"
is "$(guard_pid)" "$g0" "live keys: the same guard"
like "$(check)" "same as the running configuration" "hsmd -n: the running configuration is the file"

# ---- a broken file changes nothing
cp "$HSMD_CONF" "$T/good.conf"
echo "[volume broken" >>"$HSMD_CONF"
like "$(check)" "hsmd.conf:[0-9]+:" "hsmd -n: a broken file is an error with its line"
n=$(grep -c "still running the configuration loaded before" "$HSMD_LOG")
ok 'hup_wait' "reload of a broken file finishes"
is "$(grep -c "still running the configuration loaded before" "$HSMD_LOG")" $((n + 1)) \
	"broken file: hsmd says it keeps the configuration"
is "$(worker_pid)" "$w0" "broken file: the same worker"
ok_cmd "broken file: hsmd answers" hsm status
cp "$T/good.conf" "$HSMD_CONF"

# ---- a key that needs a restart: nothing is applied, not even the live keys with it
sed -i "s/^name = t1/name = t9/; s/^log_level = info/log_level = debug/" "$HSMD_CONF"
out=$(check)
like "$out" "site.name: needs a restart of hsmd" "hsmd -n: the site name needs a restart"
like "$out" "a reload applies none of it" "hsmd -n: says the reload applies nothing"
ok 'hup_wait' "reload with a restart-only key finishes"
ok 'grep -q "reload: nothing of .* is applied until hsmd is restarted" "$HSMD_LOG"' \
	"restart-only key: hsmd says nothing is applied"
is "$(hsm status --json | json_get site)" t1 "restart-only key: the site is still t1"
is "$(worker_pid)" "$w0" "restart-only key: the same worker"
like "$(check)" "site.log_level: applied by a reload" \
	"restart-only key: the log level was not applied either"
cp "$T/good.conf" "$HSMD_CONF"

# ---- a new volume: a new worker; a stub read meanwhile gets its bytes
printf '\n[volume w]\npath = %s\n' "$W" >>"$HSMD_CONF"
like "$(check)" "volume w \\(added\\): applied by a reload, which restarts the worker" \
	"hsmd -n: a new volume takes a new worker"
(timeout 60 cat "$V/a" | sha256sum | cut -d' ' -f1 >"$T/a.sha") 2>"$T/a.err" &
reader=$!
ok 'hup_wait' "reload with a new volume finishes"
wait "$reader"
is "$(cat "$T/a.sha")" "$sa" "a stub read while the reload restarts the worker gets its bytes" \
	"$(cat "$T/a.err")"
ok 'wait_for 20 new_worker "$w0"' "a new worker runs"
ok 'wait_for 20 hsm status' "hsmd answers after the reload"
like "$(hsm status)" "$W" "the new volume is listed"
mkrand "$W/b" 2000000
sb=$(sha "$W/b")
ok 'wait_state "$W/b" resident' "a file on the new volume is managed"
ok_cmd "archive and release on the new volume" archive_release "$W/b"
is "$(stub_check "$W/b")" stub "it is a stub"
is "$(sha "$W/b")" "$sb" "it reads back"

# ---- the store moved (copied to a new place): a new worker uses the new one
ok_cmd "release a again" hsm release "$V/a"
cp -a "$T/objects" "$T/objects2"
sed -i "s|^url = file://.*|url = file://$T/objects2|" "$HSMD_CONF"
like "$(check)" "store.url: applied by a reload, which restarts the worker" \
	"hsmd -n: a new store takes a new worker"
w1=$(worker_pid)
ok 'hup_wait' "reload with a new store finishes"
ok 'wait_for 20 new_worker "$w1"' "another new worker runs"
is "$(sha "$V/a")" "$sa" "a stub archived before reads back from the moved store"
mkrand "$W/c" 1000000
ok 'wait_state "$W/c" resident' "a new file is managed"
before=$(find "$T/objects" -type f | wc -l)
ok_cmd "archive a new file" hsm archive "$W/c"
is "$(find "$T/objects" -type f | wc -l)" "$before" "nothing new in the old store"
ok '[ "$(find "$T/objects2" -type f | wc -l)" -gt "$before" ]' "its data went to the new store"
ok_cmd "release b again" hsm release "$W/b"
like "$(check)" "same as the running configuration" "hsmd -n: the running configuration is the file"

# ---- the new volume is guarded while hsmd is down (hold 7 s, then EIO, never zeros)
ok 'hsmd_stop' "hsmd stops"
out=$(timeout 60 cat "$W/b" 2>&1 | sha256sum | cut -d' ' -f1)
isnt "$out" "$(head -c 2000000 /dev/zero | sha256sum | cut -d' ' -f1)" \
	"hsmd down: a stub of the new volume does not read as zeros"
ok '! timeout 60 cat "$W/b" >/dev/null 2>&1' "hsmd down: it fails (EIO after guard_hold)"
like "$(check)" "no hsmd runs with state directory" "hsmd -n: says no hsmd runs"
ok 'hsmd_start' "hsmd starts with both volumes"
is "$(sha "$W/b")" "$sb" "after the restart the new volume's stub reads back"
tap_done
