#!/bin/bash
# hsmd -n: a good config prints "configuration OK" and exits 0 without starting
# anything; bad configs exit 1 with "FILE:LINE: message". Needs no root.
. "$(dirname "$0")/lib.sh"
[ -x "$HSMD_BIN" ] || bail_out "$HSMD_BIN is not built"
it_init

mkdir -p "$T/vol" "$T/vol2" "$T/state"
CRED="$T/cred"
printf 'access_key = AKIAEXAMPLEEXAMPLE\nsecret_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n' >"$CRED"
chmod 0600 "$CRED"
CRED644="$T/cred644"
cp "$CRED" "$CRED644"
chmod 0644 "$CRED644"

# good_conf: the lines of a valid config, numbered as in the comments.
good_conf() {
	cat <<EOF
# hsmd.conf for tests
[site]
name = t1
state_dir = $T/state
socket = $T/hsmd.sock
log_level = debug

[store]
url = file://$T/objects
chunk_size = 4M

[volume v]
path = $T/vol
EOF
}
# line:  1 comment, 2 [site], 3 name, 4 state_dir, 5 socket, 6 log_level, 7 blank,
#        8 [store], 9 url, 10 chunk_size, 11 blank, 12 [volume v], 13 path

# check_ok NAME: hsmd -n on $T/NAME.conf must succeed.
check_ok() {
	local c="$T/$1.conf" out rc
	out=$(timeout 20 "$HSMD_BIN" -n -c "$c" 2>&1)
	rc=$?
	is "$rc" 0 "$1: hsmd -n exits 0" "$out"
	like "$out" "configuration OK" "$1: hsmd -n says configuration OK"
}

# check_bad NAME LINE WHAT: hsmd -n on $T/NAME.conf must exit 1 with "FILE:LINE:".
# LINE may be a regex ("[0-9]+") when the error has no single line.
check_bad() {
	local c="$T/$1.conf" line=$2 what=$3 out rc
	out=$(timeout 20 "$HSMD_BIN" -n -c "$c" 2>&1)
	rc=$?
	is "$rc" 1 "$1: $what: hsmd -n exits 1" "$out"
	like "$out" "(^|[^A-Za-z0-9_./-])$(printf '%s' "$c" | sed 's/[.[\*^$()+?{|]/\\&/g'):$line: [^ ]" \
		"$1: $what: the message is FILE:$line: ..."
}

# edit NAME SED-SCRIPT: a variant of the good config.
variant() {
	good_conf | sed -e "$2" >"$T/$1.conf"
}

good_conf >"$T/good.conf"
check_ok good
ok '[ ! -e "$T/hsmd.sock" ]' "good: hsmd -n creates no socket"

cat >"$T/minimal.conf" <<EOF
[site]
name = t1
socket = $T/min.sock
state_dir = $T/state
[volume v]
path = $T/vol
EOF
check_ok minimal

variant s3good "/^url = /c\\
url = s3://bucket/prefix\\
endpoint = http://127.0.0.1:9\\
region = us-east-1\\
credentials = $CRED\\
multipart_threshold = 5M\\
part_size = 5M"
check_ok s3good

variant twovol '$a\
[volume w]\
path = '"$T/vol2"
check_ok twovol

variant unknown_key '4a\
colour = blue'
check_bad unknown_key 5 "unknown key"

variant unknown_section '7a\
[bogus]'
check_bad unknown_section 8 "unknown section"

variant no_equals 's/^name = t1$/name t1/'
check_bad no_equals 3 "line without '='"

variant bad_level 's/^log_level = debug$/log_level = loud/'
check_bad bad_level 6 "bad log_level"

variant bad_size 's/^chunk_size = 4M$/chunk_size = 4X/'
check_bad bad_size 10 "bad size"

variant zero_size 's/^chunk_size = 4M$/chunk_size = 0/'
check_bad zero_size 10 "chunk_size 0"

variant rel_volume 's|^path = .*|path = relative/vol|'
check_bad rel_volume 13 "relative volume path"

variant missing_volume 's|^path = .*|path = /nonexistent/hsmd-test-vol|'
check_bad missing_volume 13 "volume path that does not exist"

variant file_volume "s|^path = .*|path = $CRED|"
check_bad file_volume 13 "volume path that is a file"

variant bad_volname 's/^\[volume v\]$/[volume Bad Name!]/'
check_bad bad_volname 12 "bad volume name"

variant dup_volume '$a\
[volume v]\
path = '"$T/vol2"
check_bad dup_volume "1[45]" "duplicate volume name"

variant bad_scheme 's|^url = .*|url = ftp://example/objects|'
check_bad bad_scheme 9 "unknown store url scheme"

variant rel_file_url 's|^url = .*|url = file://relative/objects|'
check_bad rel_file_url 9 "relative file:// url"

variant bad_recall '$a\
recall = sometimes'
check_bad bad_recall 14 "bad recall mode"

variant bad_workers 's/^log_level = debug$/workers = -3/'
check_bad bad_workers 6 "negative workers"

variant empty_name 's/^name = t1$/name =/'
check_bad empty_name 3 "empty site name"

variant no_name '/^name = t1$/d'
check_bad no_name "[0-9]+" "no site name"

variant no_volume '/^\[volume v\]$/,$d'
check_bad no_volume "[0-9]+" "no volume"

variant small_part "/^url = /c\\
url = s3://bucket\\
credentials = $CRED\\
part_size = 1M"
check_bad small_part 11 "part_size under 5 MiB"

variant cred644 "/^url = /c\\
url = s3://bucket\\
credentials = $CRED644"
check_bad cred644 10 "credentials file mode 0644"
like "$(timeout 20 "$HSMD_BIN" -n -c "$T/cred644.conf" 2>&1)" "0600|mode|permission" \
	"cred644: the message names the mode problem"

variant cred_missing "/^url = /c\\
url = s3://bucket\\
credentials = $T/no-such-cred"
check_bad cred_missing 10 "missing credentials file"

variant outside_section '1a\
name = early'
check_bad outside_section 2 "key before any section"

out=$(timeout 20 "$HSMD_BIN" -n -c "$T/does-not-exist.conf" 2>&1)
rc=$?
is "$rc" 1 "missing config file: hsmd -n exits 1" "$out"
like "$out" "does-not-exist\.conf" "missing config file: the message names the file"

tap_done
