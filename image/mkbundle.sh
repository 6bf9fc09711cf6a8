#!/bin/bash
# mkbundle.sh ROOT_SQFS UKI VERSION LBD_VERSION OUT: an update bundle for
# `lbd update`: a tar of manifest.json (first), root.sqfs and lbd.efi, the
# manifest giving each member's size and SHA-256 (see appliance/update).
# The UKI's command line names slot A's root (root=PARTLABEL=LBROOT_A);
# lbd update rewrites the letter for the slot it writes.
set -euo pipefail
root=${1:?usage: mkbundle.sh ROOT_SQFS UKI VERSION LBD_VERSION OUT}
uki=${2:?}
version=${3:?}
lbdver=${4:?}
out=${5:?}
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
ln -s "$(readlink -f "$root")" "$d/root.sqfs"
ln -s "$(readlink -f "$uki")" "$d/lbd.efi"
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat >"$d/manifest.json" <<JSON
{"format":1,"version":"$version","lbd":"$lbdver",
 "root":{"name":"root.sqfs","size":$(stat -Lc %s "$root"),"sha256":"$(sha "$root")"},
 "uki":{"name":"lbd.efi","size":$(stat -Lc %s "$uki"),"sha256":"$(sha "$uki")"}}
JSON
tar -C "$d" --dereference --format=gnu --owner=0 --group=0 --numeric-owner \
	--mtime="@${SOURCE_DATE_EPOCH:-0}" -cf "$out.tmp" manifest.json root.sqfs lbd.efi
mv "$out.tmp" "$out"
