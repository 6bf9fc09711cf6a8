#!/bin/sh
# build-deb.sh LBD_BINARY OUTDIR VERSION: builds OUTDIR/lbd_VERSION_amd64.deb
# (binary, hardened unit, conffile, man page, bash completion, copyright,
# changelog) with dpkg-deb alone: no debhelper, no source package. Called
# by `make deb` (packaging/deb.mk) and by the deb e2e test.
set -eu

bin=$1 out=$2 version=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
deb=$here/debian

case $version in
[0-9]*) ;;
*) echo "build-deb: version '$version' does not start with a digit" >&2; exit 1 ;;
esac
[ -x "$bin" ] || { echo "build-deb: no lbd binary at $bin" >&2; exit 1; }

# The package's unit must carry the appliance unit's hardening, line for
# line (the directives a sandbox is made of; comments may differ).
hardening() {
	grep -E '^(User|Group|CapabilityBoundingSet|AmbientCapabilities|NoNewPrivileges|Protect[A-Za-z]*|Private[A-Za-z]*|Restrict[A-Za-z]*|SystemCall[A-Za-z]*|LockPersonality|MemoryDenyWriteExecute|UMask|RemoveIPC|KeyringMode|ReadWritePaths|ProcSubset|DevicePolicy|DeviceAllow|IPAddress[A-Za-z]*)=' "$1"
}
if ! hardening "$repo/rootfs/etc/systemd/system/lbd.service" >"$out/.hardening.image" 2>/dev/null ||
	! hardening "$deb/lbd.service" >"$out/.hardening.deb" ||
	! diff -u "$out/.hardening.image" "$out/.hardening.deb" >&2; then
	echo "build-deb: packaging/debian/lbd.service and rootfs/etc/systemd/system/lbd.service differ in their hardening" >&2
	rm -f "$out/.hardening.image" "$out/.hardening.deb"
	exit 1
fi
rm -f "$out/.hardening.image" "$out/.hardening.deb"

# Reproducible: every date and mtime is the last commit's.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

root=$(mktemp -d "$out/.deb-root.XXXXXX")
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
umask 022

install -D -m 0755 "$bin" "$root/usr/sbin/lbd"
# /lib, not /usr/lib: bookworm's dpkg does not yet know /lib and /usr/lib
# are one (the usr-merge moratorium), and debhelper installs units there.
install -D -m 0644 "$deb/lbd.service" "$root/lib/systemd/system/lbd.service"
install -D -m 0644 "$repo/rootfs/usr/lib/sysusers.d/lbd.conf" "$root/usr/lib/sysusers.d/lbd.conf"
install -D -m 0644 "$deb/lb.toml" "$root/etc/lbd/lb.toml"
install -d -m 0755 "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" \
	"$root/usr/share/doc/lbd"
"$bin" help --man | gzip -9n >"$root/usr/share/man/man8/lbd.8.gz"
"$bin" completion bash >"$root/usr/share/bash-completion/completions/lbd"
chmod 0644 "$root/usr/share/bash-completion/completions/lbd"

# copyright: the package's own, plus every Go module linked into the binary
# and the license its module cache copy carries.
modcache=$(go env GOMODCACHE 2>/dev/null || true)
modules=$(go version -m "$bin" 2>/dev/null | awk '$1 == "dep" { print $2, $3 }' | while read -r mod ver; do
	lic=unknown
	esc=$(printf '%s' "$mod" | sed 's/[A-Z]/!&/g' | tr 'A-Z' 'a-z')
	for f in "$modcache/$esc@$ver"/LICENSE* "$modcache/$esc@$ver"/COPYING*; do
		[ -f "$f" ] || continue
		if grep -q 'Apache License' "$f"; then lic=Apache-2.0
		elif grep -q 'Redistribution and use in source and binary forms' "$f"; then lic=BSD
		elif grep -q 'Permission is hereby granted, free of charge' "$f"; then lic=Expat
		elif grep -q 'Mozilla Public License' "$f"; then lic=MPL-2.0
		fi
		break
	done
	printf ' %s %s (%s)\n' "$mod" "$ver" "$lic"
done)
{
	sed '/@MODULES@/d' "$deb/copyright.in"
	if [ -n "$modules" ]; then
		printf '\nFiles: usr/sbin/lbd\nCopyright: the authors of each Go module listed\nLicense: various\n Statically linked Go modules, with their licenses:\n'
		printf '%s\n' "$modules"
		printf ' The Go standard library: BSD-3-Clause (Go %s).\n' "$(go version -m "$bin" | awk 'NR==1 { print $2 }')"
	fi
} >"$root/usr/share/doc/lbd/copyright"
chmod 0644 "$root/usr/share/doc/lbd/copyright"

# changelog (native package): one entry for this build.
date=$(date -u -R -d "@$SOURCE_DATE_EPOCH")
{
	printf 'lbd (%s) unstable; urgency=medium\n\n' "$version"
	printf '  * Built from git %s.\n\n' "$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
	printf ' -- lbd developers <lbd@example.org>  %s\n' "$date"
} | gzip -9n >"$root/usr/share/doc/lbd/changelog.gz"

install -D -m 0644 "$deb/lintian-overrides" "$root/usr/share/lintian/overrides/lbd"

install -d -m 0755 "$root/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$deb/$s" "$root/DEBIAN/$s"
done
echo /etc/lbd/lb.toml >"$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$deb/control.in" >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles" "$root/DEBIAN/md5sums"

find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
target=$out/lbd_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$target" >/dev/null
echo "$target"
