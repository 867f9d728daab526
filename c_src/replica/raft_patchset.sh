#!/usr/bin/env bash
# Prints what build/raft/lib/libraft.a must be built from: the pinned
# tarball's sha256 and the sha256 of every patch in c_src/replica/patches
# (name and content, in order), or "unpatched" with RAFT_NO_PATCHES=1.
# build_raft.sh stores it as OUT/lib/patchset; the Makefile rebuilds raft
# and links it only when the two agree, so a libraft.a built from another
# patch set (an older checkout, a restored cache) is never used as is,
# whatever the files' times say.
#
# With --check RAFT_DIR it prints nothing and exits 0 only when
# RAFT_DIR/lib/libraft.a exists and was built from this patch set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ "${1:-}" = --check ]; then
	dir=${2:?usage: raft_patchset.sh --check RAFT_DIR}
	[ -f "$dir/lib/libraft.a" ] && "$0" | cmp -s - "$dir/lib/patchset"
	exit
fi
cut -d' ' -f1 "$here/raft_0.22.1.orig.tar.gz.sha256"
if [ "${RAFT_NO_PATCHES:-0}" = 1 ]; then
	echo unpatched
	exit 0
fi
for p in "$here"/patches/*.patch; do
	[ -e "$p" ] || continue
	printf '%s %s\n' "$(sha256sum <"$p" | cut -d' ' -f1)" "$(basename "$p")"
done
