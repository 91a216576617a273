#!/bin/bash
# Copy tools on stubs (ext4 and xfs): cp, cp --sparse=always, GNU tar, tar --sparse,
# rsync, rsync --sparse and bsdtar must copy the real bytes of a released file. Tools
# that look for data with SEEK_DATA/SEEK_HOLE or FIEMAP (which raise no fanotify
# event) would find none in a stub unless hsmd recalls it when it is opened.
# Two files: a dense one and one with holes of its own. Each tool gets a fresh stub.
. "$(dirname "$0")/lib.sh"
it_setup_root

# copy_with TOOL SRC DESTDIR: copies SRC into DESTDIR/ with TOOL; prints nothing.
copy_with() {
	local tool=$1 src=$2 d=$3 base
	base=$(basename "$src")
	mkdir -p "$d"
	case "$tool" in
	cp) cp "$src" "$d/$base" ;;
	cp-sparse) cp --sparse=always "$src" "$d/$base" ;;
	tar) tar -cf "$d.tar" -C "$(dirname "$src")" "$base" && tar -xf "$d.tar" -C "$d" ;;
	tar-sparse) tar --sparse -cf "$d.tar" -C "$(dirname "$src")" "$base" &&
		tar -xf "$d.tar" -C "$d" ;;
	rsync) rsync "$src" "$d/$base" ;;
	rsync-sparse) rsync --sparse "$src" "$d/$base" ;;
	bsdtar) bsdtar -cf "$d.tar" -C "$(dirname "$src")" "$base" && bsdtar -xf "$d.tar" -C "$d" ;;
	esac
}

TOOLS="cp cp-sparse tar tar-sparse rsync rsync-sparse bsdtar"

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 512M
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts" || continue

	# dense: 9 MiB + 123 bytes of random data (three chunks, a short last one)
	mkrand "$V/dense" $((9 * 1048576 + 123))
	# holey: 1 MiB data, 8 MiB hole, 1 MiB data, 2 MiB hole at the end
	mkrand "$T/part" 1048576
	vt dd if="$T/part" of="$V/holey" bs=1M seek=0 conv=notrunc status=none
	vt dd if="$T/part" of="$V/holey" bs=1M seek=9 conv=notrunc status=none
	vt truncate -s 12M "$V/holey"
	ok_cmd "$fs: archive both files" hsm archive "$V/dense" "$V/holey"

	for name in dense holey; do
		f="$V/$name"
		want=$(sha "$f")
		for tool in $TOOLS; do
			hsm release "$f" >"$T/out" 2>&1
			is "$(stub_check "$f")" stub "$fs $name: a stub before $tool" \
				"$(cat "$T/out")"
			d="$T/copy-$fs-$name-$tool"
			vt bash -c "$(declare -f copy_with); copy_with $tool '$f' '$d'" \
				>"$T/tool.out" 2>&1
			rc=$?
			ok '[ "$rc" -eq 0 ]' "$fs $name: $tool exits 0" "rc=$rc: $(cat "$T/tool.out")"
			is "$(sha "$d/$name")" "$want" "$fs $name: $tool copied the real bytes"
			rm -rf "$d" "$d.tar"
		done
	done
	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
