#!/usr/bin/env bash
# Builds raft 0.22.1 (cowsql/raft) for cluster mode into OUT (build/raft):
# OUT/lib/libraft.a (static, PIC) and OUT/include/. The source comes from
# Debian 13 (trixie)'s source package through a private apt state under
# OUT/apt (the machine's apt configuration is not touched), is checked
# against the pinned sha256 of the upstream orig tarball (any Debian
# revision of 0.22.1 is accepted), and gets this project's patches.
# Nothing fetched is committed: it all stays in OUT.
#
# Exit 0 when OUT/lib/libraft.a is built. Otherwise exit 1 with the reason
# (what is missing and how to enable cluster mode) in OUT/missing, which
# the build turns into the NIF's "no cluster support" answer.
#
# Environment: RAFT_DEBIAN_MIRROR (default http://deb.debian.org/debian);
# RAFT_NO_PATCHES=1 builds without the patches, only to show that the
# tests in test/c/raft fail without them.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build_raft.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=0.22.1
orig="raft_${version}.orig.tar.gz"
sha_file="$here/${orig}.sha256"
mirror=${RAFT_DEBIAN_MIRROR:-http://deb.debian.org/debian}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
enable='cluster mode needs it (`make raft` builds it); the single-node store works without it'
log="$out/build.log"

# One build at a time per tree (make -j, two make runs).
exec 9>"$out/.lock"
flock 9

missing() {
	printf '%s\n' "$1" >"$out/missing"
	echo "raft: not built: $1" >&2
	exit 1
}

rm -f "$out/missing"
: >"$log"
# No library from an earlier build survives a failed one: a libraft.a is
# there only when built from the current patch set (lib/patchset).
rm -rf "$out/lib" "$out/include"
patchset=$("$here/raft_patchset.sh")

[ "$(uname -s)" = Linux ] ||
	missing "raft $version was not built: cluster mode needs Linux (raft's libuv I/O); $enable"

need=""
for tool in apt-get autoreconf libtoolize pkg-config patch flock make; do
	command -v "$tool" >/dev/null 2>&1 || need="$need $tool"
done
for lib in libuv liblz4; do
	pkg-config --exists "$lib" 2>/dev/null || need="$need $lib(-dev)"
done
[ -r "$keyring" ] || need="$need debian-archive-keyring"
[ -z "$need" ] ||
	missing "raft $version was not built: missing$need; \`make deps\` installs them (libuv1-dev liblz4-dev autoconf automake libtool pkg-config), then \`make raft\`; $enable"

dl="$out/dl"
mkdir -p "$dl"
want=$(cut -d' ' -f1 "$sha_file")
have() { [ -f "$dl/$orig" ] && [ "$(sha256sum "$dl/$orig" | cut -d' ' -f1)" = "$want" ]; }

if ! have; then
	echo "raft: fetching raft $version from Debian trixie's source package ($mirror)"
	apt_dir="$out/apt"
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	echo "deb-src [signed-by=$keyring] $mirror trixie main" >"$apt_dir/sources.list"
	apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list"
		-o Dir::Etc::SourceParts=/dev/null
		-o "Dir::State::Lists=$apt_dir/lists"
		-o "Dir::Cache=$apt_dir/cache"
		-o APT::Sandbox::User=root
		-o Acquire::Retries=1 -o Acquire::http::Timeout=20)
	apt-get "${apt_opts[@]}" -q --error-on=any update >>"$log" 2>&1 ||
		missing "raft $version could not be fetched: \`apt-get update\` of $mirror trixie (deb-src) failed (no network? see $log); $enable"
	# Any Debian revision of the upstream version; the tarball is checked below.
	deb_version=$(apt-cache "${apt_opts[@]}" showsrc raft 2>>"$log" |
		sed -n "s/^Version: \(${version//./\\.}-[^ ]*\)$/\1/p" | sort -V | tail -1)
	[ -n "$deb_version" ] ||
		missing "raft $version could not be fetched: Debian trixie has no source package raft $version-* (see $log); $enable"
	(cd "$dl" && apt-get "${apt_opts[@]}" -q source --download-only "raft=$deb_version") >>"$log" 2>&1 ||
		missing "raft $version could not be fetched: \`apt-get source raft=$deb_version\` failed (no network? see $log); $enable"
	have || {
		got=$(sha256sum "$dl/$orig" 2>/dev/null | cut -d' ' -f1)
		missing "raft $version was not built: $orig has sha256 ${got:-(absent)}, expected $want ($sha_file); $enable"
	}
fi

src="$out/src/raft-$version"
rm -rf "$out/src"
mkdir -p "$out/src"
tar -xzf "$dl/$orig" -C "$out/src" ||
	missing "raft $version was not built: cannot unpack $orig; $enable"
if [ "${RAFT_NO_PATCHES:-0}" != 1 ]; then
	for p in "$here"/patches/*.patch; do
		echo "raft: applying $(basename "$p")"
		patch -d "$src" -p1 --batch --forward <"$p" >>"$log" 2>&1 ||
			missing "raft $version was not built: patch $(basename "$p") does not apply (see $log); $enable"
	done
else
	echo "raft: RAFT_NO_PATCHES=1: building WITHOUT this project's patches"
fi

echo "raft: building static PIC libraft.a (log: $log)"
(
	set -e
	cd "$src"
	autoreconf -i
	./configure --prefix="$out" --disable-shared --enable-static --with-pic \
		--enable-uv --with-lz4 --disable-benchmark --disable-example
	make -j"$(nproc 2>/dev/null || echo 2)"
	make install
) >>"$log" 2>&1 || {
	tail -20 "$log" >&2
	missing "raft $version was not built: its build failed (see $log); $enable"
}
[ -f "$out/lib/libraft.a" ] ||
	missing "raft $version was not built: no lib/libraft.a after install (see $log); $enable"
printf '%s\n' "$patchset" >"$out/lib/patchset"
echo "raft: $out/lib/libraft.a"
