#!/bin/bash
# mkimage.sh: assembles the lbd appliance disk from plain files.
#
#   image/mkimage.sh TREE LBD OUTDIR [VERSION]
#
# TREE   root tree built by mkosi (out/mkosi/root), kernel and initrd in /boot
# LBD    the lbd binary to install as /usr/bin/lbd
# OUTDIR where lbd.img, lbd.qcow2 and the intermediate files go (out/)
#
# Nothing is ever mounted: the build machines cannot mount vfat nor parse a
# GPT. Each filesystem is made in its own file (mkfs.fat + mtools, mksquashfs,
# mkfs.ext4 -d), the partition table is written onto the plain disk file
# with sfdisk and each filesystem copied in with dd conv=notrunc.
#
# Disk layout (GPT, 1 MiB aligned):
#   1 ESP       FAT    EFI/BOOT/BOOTX64.EFI = unified kernel image
#                      (systemd-boot stub + kernel + initrd + cmdline + os-release)
#   2 LBROOT    squashfs, read-only root (GPT type: Linux root x86-64)
#   3 LBCONFIG  FAT16, lb.toml + README.txt (type: Microsoft basic data, so
#               Windows and macOS mount it when the disk is plugged in)
#   4 LBSTATE   ext4, writable state: last good config, DHCP leases
set -euo pipefail

tree=${1:?usage: mkimage.sh TREE LBD OUTDIR [VERSION]}
lbd=${2:?}
out=${3:?}
version=${4:-dev}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=$out/image
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

# Sizes in MiB of the partitions whose size is not given by their content.
ESP_MIN_MB=${ESP_MIN_MB:-20}
CONFIG_MB=${CONFIG_MB:-8}
STATE_MB=${STATE_MB:-16}
# Kernel command line baked into the unified kernel image.
CMDLINE=${CMDLINE:-"root=PARTLABEL=LBROOT rootfstype=squashfs ro console=tty0 console=ttyS0,115200 net.ifnames=0 loglevel=4 panic=10"}
# Fixed identifiers so the same inputs give the same disk.
DISK_GUID=6c62642d-0000-4000-8000-000000000000
ESP_GUID=6c62642d-0001-4000-8000-000000000001
ROOT_GUID=6c62642d-0002-4000-8000-000000000002
CONFIG_GUID=6c62642d-0003-4000-8000-000000000003
STATE_GUID=6c62642d-0004-4000-8000-000000000004
STATE_FS_UUID=6c62642d-0004-4000-8000-0000000000f4

TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
TYPE_ROOT_X86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
TYPE_MS_BASIC_DATA=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
TYPE_LINUX_DATA=0FC63DAF-8483-4772-8E79-3D69D8477DE4

STUB=${STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}

step() { printf '==> %s\n' "$*"; }
mib() { echo $(( ($(stat -Lc %s "$1") + 1048575) / 1048576 )); }

[ -d "$tree/usr" ] || { echo "mkimage: no root tree at $tree (run mkosi first)" >&2; exit 1; }
[ -x "$lbd" ] || { echo "mkimage: no lbd binary at $lbd" >&2; exit 1; }
kernel=$(ls "$tree"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
initrd=$(ls "$tree"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n1)
[ -f "$kernel" ] && [ -f "$initrd" ] || { echo "mkimage: no kernel/initrd in $tree/boot" >&2; exit 1; }

rm -rf "$work"
mkdir -p "$work"

step "root tree: hard-linked copy of $tree + rootfs/ + lbd $version"
# A hard-linked copy: files we change are replaced, never written through.
cp -al "$tree" "$work/root"
cp -a --remove-destination "$repo/rootfs/." "$work/root/"
rm -f "$work/root/usr/bin/lbd"
install -m 0755 "$lbd" "$work/root/usr/bin/lbd"
# The users of rootfs/usr/lib/sysusers.d (lbd.service runs as user lbd):
# the root is read-only at run time, so they go into /etc/passwd now.
# sysusers replaces the files (rename), never writing through the hard links.
systemd-sysusers --root="$work/root" >/dev/null
if [ "$(head -c 2 "$lbd")" = "#!" ]; then
	# The placeholder script notifies through systemd-notify (another PID)
	# and feeds no watchdog.
	mkdir -p "$work/root/etc/systemd/system/lbd.service.d"
	printf '[Service]\nNotifyAccess=all\nWatchdogSec=0\n' >"$work/root/etc/systemd/system/lbd.service.d/placeholder.conf"
fi
osrel=$work/os-release
{
	grep -v -E '^(PRETTY_NAME|IMAGE_ID|IMAGE_VERSION)=' "$tree/usr/lib/os-release"
	echo "PRETTY_NAME=\"lbd appliance $version (Debian $(cat "$tree/etc/debian_version"))\""
	echo "IMAGE_ID=lbd"
	echo "IMAGE_VERSION=$version"
} >"$osrel"
rm -f "$work/root/usr/lib/os-release"
cp "$osrel" "$work/root/usr/lib/os-release"

# zstd level 15: within 2 MiB of level 19 (and of xz) at a third of the time.
SQUASHFS_COMP=${SQUASHFS_COMP:-"-comp zstd -Xcompression-level 15"}
step "LBROOT: squashfs ($SQUASHFS_COMP)"
# shellcheck disable=SC2086
mksquashfs "$work/root" "$work/root.sqfs" -noappend -quiet -no-progress \
	$SQUASHFS_COMP -b 256K -all-root \
	-wildcards -e 'boot/*' >/dev/null
rm -rf "$work/root"

step "ESP: unified kernel image at EFI/BOOT/BOOTX64.EFI"
printf '%s' "$CMDLINE" >"$work/cmdline"
# Each section goes after the previous one, 4 KiB aligned, past the stub's end.
uki=$work/BOOTX64.EFI
end=$(objdump -h "$STUB" | awk 'NF == 7 && $1 ~ /^[0-9]+$/ { print $3, $4 }' |
	while read -r size vma; do echo $((16#$vma + 16#$size)); done | sort -n | tail -n1)
align() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
args=()
off=$(align "$end")
for s in osrel:"$osrel" cmdline:"$work/cmdline" linux:"$kernel" initrd:"$initrd"; do
	name=${s%%:*} file=${s#*:}
	args+=(--add-section ".$name=$file" --change-section-vma ".$name=$(printf 0x%x "$off")")
	off=$(align $((off + $(stat -Lc %s "$file"))))
done
objcopy "${args[@]}" "$STUB" "$uki"
esp_mb=$(( $(mib "$uki") + 4 ))
[ "$esp_mb" -lt "$ESP_MIN_MB" ] && esp_mb=$ESP_MIN_MB
# FAT16 below 64 MiB (FAT32 needs at least ~33 MiB, and UEFI firmware reads
# FAT16 ESPs), FAT32 above.
fat=16
[ "$esp_mb" -ge 64 ] && fat=32
mkfs.fat -F $fat -n ESP -i 4c424445 -C "$work/esp.img" $((esp_mb * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$uki" ::/EFI/BOOT/BOOTX64.EFI

step "LBCONFIG: FAT with lb.toml and README.txt"
mkfs.fat -F 16 -s 2 -n LBCONFIG -i 4c424343 -C "$work/config.img" $((CONFIG_MB * 1024)) >/dev/null
mcopy -i "$work/config.img" "$repo/rootfs/config/lb.toml" ::/lb.toml
mcopy -i "$work/config.img" "$repo/rootfs/usr/share/lbd/README.txt" ::/README.txt

step "LBSTATE: ext4"
mkdir -p "$work/state"
echo "lbd state: last config that applied cleanly, DHCP leases. Safe to wipe." >"$work/state/README"
mkfs.ext4 -q -F -L LBSTATE -U "$STATE_FS_UUID" -E root_owner=0:0 -d "$work/state" \
	"$work/state.img" "${STATE_MB}M"

step "disk: GPT + partitions"
root_mb=$(( $(mib "$work/root.sqfs") + 1 ))
s_esp=1
s_root=$((s_esp + esp_mb))
s_config=$((s_root + root_mb))
s_state=$((s_config + CONFIG_MB))
total=$((s_state + STATE_MB + 1))
img=$out/lbd.img
rm -f "$img"
truncate -s "${total}M" "$img"
sect() { echo $(( $1 * 2048 )); }
sfdisk --quiet --no-reread --no-tell-kernel "$img" <<SFDISK
label: gpt
label-id: $DISK_GUID
unit: sectors
first-lba: 2048

start=$(sect $s_esp), size=$(sect "$esp_mb"), type=$TYPE_ESP, uuid=$ESP_GUID, name="ESP"
start=$(sect $s_root), size=$(sect "$root_mb"), type=$TYPE_ROOT_X86_64, uuid=$ROOT_GUID, name="LBROOT", attrs="GUID:60"
start=$(sect $s_config), size=$(sect "$CONFIG_MB"), type=$TYPE_MS_BASIC_DATA, uuid=$CONFIG_GUID, name="LBCONFIG"
start=$(sect $s_state), size=$(sect "$STATE_MB"), type=$TYPE_LINUX_DATA, uuid=$STATE_GUID, name="LBSTATE"
SFDISK
put() { dd if="$1" of="$img" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$work/esp.img" $s_esp
put "$work/root.sqfs" $s_root
put "$work/config.img" $s_config
put "$work/state.img" $s_state
# Where each partition starts, for tools that edit the image (mtools -i img@@OFFSET).
cat >"$out/lbd.img.layout" <<LAYOUT
ESP_OFFSET=$((s_esp * 1048576))
ROOT_OFFSET=$((s_root * 1048576))
CONFIG_OFFSET=$((s_config * 1048576))
STATE_OFFSET=$((s_state * 1048576))
LAYOUT
cp "$kernel" "$out/lbd.vmlinuz"
cp "$initrd" "$out/lbd.initrd"

step "qcow2"
qemu-img convert -f raw -O qcow2 -c "$img" "$out/lbd.qcow2"

sfdisk --dump "$img" | grep 'start=' | sed 's/^/    /'
printf '    %-10s %6s MiB\n' ESP "$esp_mb" LBROOT "$root_mb" LBCONFIG "$CONFIG_MB" LBSTATE "$STATE_MB"
printf 'image: %s  %d MiB raw (root squashfs %s MiB, UKI %s MiB)\n' "$img" "$total" \
	"$(mib "$work/root.sqfs")" "$(mib "$uki")"
printf 'image: %s  %s MiB qcow2\n' "$out/lbd.qcow2" "$(mib "$out/lbd.qcow2")"
