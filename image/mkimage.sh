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
#   1 ESP       FAT    EFI/BOOT/BOOTX64.EFI = systemd-boot, loader/loader.conf,
#                      EFI/Linux/lbd-a.efi = slot A's unified kernel image
#                      (systemd stub + kernel + initrd + cmdline + os-release);
#                      for legacy BIOS: syslinux (its boot record in this
#                      partition, syslinux/ldlinux.sys), syslinux/syslinux.cfg
#                      and slot A's kernel and initrd (syslinux/lbd-a.linux,
#                      .initrd); GPT attribute LegacyBIOSBootable
#   2 LBROOT_A  squashfs, read-only root of slot A (GPT type: Linux root x86-64)
#   3 LBROOT_B  slot B, empty until the first `lbd update`
#   4 LBCONFIG  FAT, lb.toml + README.txt (type: Microsoft basic data, so
#               Windows and macOS mount it when the disk is plugged in);
#               room for an update bundle dropped next to lb.toml
#   5 LBSTATE   ext4, writable state: last good config, DHCP leases
# The protective MBR's boot code is syslinux's gptmbr.bin: under BIOS it
# starts the boot record of the partition marked LegacyBIOSBootable.
# Also written: OUTDIR/lbd-update.bundle, the update bundle of this build
# (root squashfs + UKI + manifest.json with their SHA-256) for `lbd update`.
set -euo pipefail

tree=${1:?usage: mkimage.sh TREE LBD OUTDIR [VERSION]}
lbd=${2:?}
out=${3:?}
version=${4:-dev}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=$out/image
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}

# Partition sizes in MiB. Fixed, not fitted to this build's content: an
# appliance keeps its partition table for life, so the ESP must hold two
# UKIs and each root slot the squashfs of later versions too, and the
# config partition an update bundle (root + UKI) besides lb.toml.
# The ESP: 128 MiB (was 48 before legacy BIOS boot): per slot a UKI
# (~16 MiB) and, for syslinux, the same kernel and initrd again (~16 MiB),
# so ~64 MiB for two slots today, and room for kernels twice that size.
# Appliances made with 48 MiB keep it; lbd update skips the BIOS files
# there (no syslinux on that ESP).
ESP_MB=${ESP_MB:-128}
ROOT_MB=${ROOT_MB:-96}
CONFIG_MB=${CONFIG_MB:-128}
STATE_MB=${STATE_MB:-16}
# The image version (IMAGE_VERSION of os-release, the bundle's version):
# systemd-boot boots the entry with the newest one, so it must grow with
# every build: the date and time of the last commit, plus the build time
# when the tree has uncommitted changes.
if [ -z "${IMAGE_VERSION:-}" ]; then
	IMAGE_VERSION=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d.%H%M%S)
	if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		IMAGE_VERSION=$IMAGE_VERSION.$(date -u +%s)
	fi
fi
# Kernel command line baked into the unified kernel image. root= names the
# slot; `lbd update` rewrites the letter for the slot it writes.
CMDLINE=${CMDLINE:-"root=PARTLABEL=LBROOT_A rootfstype=squashfs ro console=tty0 console=ttyS0,115200 net.ifnames=0 loglevel=4 panic=10 systemd.show_status=error"}
# Fixed identifiers so the same inputs give the same disk.
DISK_GUID=6c62642d-0000-4000-8000-000000000000
ESP_GUID=6c62642d-0001-4000-8000-000000000001
ROOT_GUID=6c62642d-0002-4000-8000-000000000002
ROOT_B_GUID=6c62642d-0002-4000-8000-00000000000b
CONFIG_GUID=6c62642d-0003-4000-8000-000000000003
STATE_GUID=6c62642d-0004-4000-8000-000000000004
STATE_FS_UUID=6c62642d-0004-4000-8000-0000000000f4

TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
TYPE_ROOT_X86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
TYPE_MS_BASIC_DATA=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
TYPE_LINUX_DATA=0FC63DAF-8483-4772-8E79-3D69D8477DE4

STUB=${STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}
SDBOOT=${SDBOOT:-/usr/lib/systemd/boot/efi/systemd-bootx64.efi}
# syslinux's boot code for a GPT disk's protective MBR (syslinux-common).
GPTMBR=${GPTMBR:-/usr/lib/syslinux/mbr/gptmbr.bin}

step() { printf '==> %s\n' "$*"; }
mib() { echo $(( ($(stat -Lc %s "$1") + 1048575) / 1048576 )); }

[ -d "$tree/usr" ] || { echo "mkimage: no root tree at $tree (run mkosi first)" >&2; exit 1; }
[ -x "$lbd" ] || { echo "mkimage: no lbd binary at $lbd" >&2; exit 1; }
kernel=$(ls "$tree"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n1)
initrd=$(ls "$tree"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n1)
[ -f "$kernel" ] && [ -f "$initrd" ] || { echo "mkimage: no kernel/initrd in $tree/boot" >&2; exit 1; }
# The initrd loads the netfilter modules early (mkosi.postinst); they must
# be the ones lbd's modules-load.d names, or lbd would wait for the others.
want=$(grep -v -e '^#' -e '^$' "$repo/rootfs/etc/modules-load.d/lbd.conf" | tr '\n' ' ' | sed 's/ $//')
have=$(zstd -dc "$initrd" | grep -a -o '^NF_MODULES="[^"]*"' | sed -n '1{s/^NF_MODULES="//; s/"$//; p}')
[ "$want" = "$have" ] || {
	echo "mkimage: the initrd loads \"$have\" early, rootfs/etc/modules-load.d/lbd.conf lists \"$want\": update NF_MODULES in mkosi.postinst" >&2
	exit 1
}

rm -rf "$work"
mkdir -p "$work"

step "root tree: hard-linked copy of $tree + rootfs/ + lbd $version, image $IMAGE_VERSION"
# A hard-linked copy: files we change are replaced, never written through.
cp -al "$tree" "$work/root"
cp -a --remove-destination "$repo/rootfs/." "$work/root/"
rm -f "$work/root/usr/bin/lbd"
# Where the ESP is mounted (fstab: automount, for lbd update and
# systemd-bless-boot).
mkdir -p "$work/root/efi"
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
	echo "PRETTY_NAME=\"lbd appliance $IMAGE_VERSION (lbd $version, Debian $(cat "$tree/etc/debian_version"))\""
	echo "IMAGE_ID=lbd"
	echo "IMAGE_VERSION=$IMAGE_VERSION"
	echo "LBD_VERSION=$version"
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

step "ESP: systemd-boot + EFI/Linux/lbd-a.efi (unified kernel image of slot A)"
printf '%s' "$CMDLINE" >"$work/cmdline"
uki=$work/lbd.efi
"$here/mkuki.sh" "$osrel" "$work/cmdline" "$kernel" "$initrd" "$uki"
uki_mb=$(mib "$uki")
bios_mb=$(( $(mib "$kernel") + $(mib "$initrd") ))
[ $((2 * (uki_mb + bios_mb) + 2)) -le "$ESP_MB" ] ||
	{ echo "mkimage: ESP_MB=$ESP_MB cannot hold two slots of a ${uki_mb} MiB UKI + ${bios_mb} MiB kernel and initrd" >&2; exit 1; }
# No menu (timeout 0; a key held at boot still shows it), the newest entry
# with tries left boots (systemd-boot's own order), no editor.
cat >"$work/loader.conf" <<LOADER
timeout 0
editor no
auto-entries no
auto-firmware no
LOADER
# FAT16 below 64 MiB (UEFI firmware reads FAT16 ESPs), FAT32 above.
fat=16
[ "$ESP_MB" -ge 64 ] && fat=32
mkfs.fat -F $fat -n ESP -i 4c424445 -C "$work/esp.img" $((ESP_MB * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader
mcopy -i "$work/esp.img" "$SDBOOT" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$work/esp.img" "$SDBOOT" ::/EFI/systemd/systemd-bootx64.efi
mcopy -i "$work/esp.img" "$work/loader.conf" ::/loader/loader.conf
# Slot A starts good (no boot counter): there is nothing to fall back to.
mcopy -i "$work/esp.img" "$uki" ::/EFI/Linux/lbd-a.efi
# Legacy BIOS: syslinux's mtools installer writes its boot record into this
# FAT and ldlinux.sys/ldlinux.c32 into syslinux/ (no mount). syslinux.cfg
# is what lbd writes (appliance/update renderSyslinux, same text, so the
# first boot finds nothing to change); each boot and lbd update keep its
# DEFAULT on the slot systemd-boot would boot.
mmd -i "$work/esp.img" ::/syslinux
syslinux --install --directory /syslinux "$work/esp.img"
mcopy -i "$work/esp.img" "$kernel" ::/syslinux/lbd-a.linux
mcopy -i "$work/esp.img" "$initrd" ::/syslinux/lbd-a.initrd
printf '%s\n' \
	'# Legacy BIOS boot of the lbd appliance (syslinux). Written by lbd: do not' \
	'# edit (lbd update and every boot rewrite it). DEFAULT is the slot' \
	'# systemd-boot would boot from the entries in EFI/Linux (see' \
	'# image/README.md, "Legacy BIOS"). To pick a slot by hand, hold Shift while' \
	'# syslinux starts and type its label at the boot: prompt.' \
	'PROMPT 0' 'TIMEOUT 0' 'DEFAULT lbd-a' '' 'LABEL lbd-a' \
	'	LINUX /syslinux/lbd-a.linux' '	INITRD /syslinux/lbd-a.initrd' "	APPEND $CMDLINE" >"$work/syslinux.cfg"
mcopy -i "$work/esp.img" "$work/syslinux.cfg" ::/syslinux/syslinux.cfg

step "bundle: $out/lbd-update.bundle ($IMAGE_VERSION)"
"$here/mkbundle.sh" "$work/root.sqfs" "$uki" "$IMAGE_VERSION" "$version" "$out/lbd-update.bundle"

step "LBCONFIG: FAT with lb.toml and README.txt"
mkfs.fat -F 16 -n LBCONFIG -i 4c424343 -C "$work/config.img" $((CONFIG_MB * 1024)) >/dev/null
mcopy -i "$work/config.img" "$repo/rootfs/config/lb.toml" ::/lb.toml
mcopy -i "$work/config.img" "$repo/rootfs/usr/share/lbd/README.txt" ::/README.txt

step "LBSTATE: ext4"
mkdir -p "$work/state"
echo "lbd state: last config that applied cleanly, DHCP leases. Safe to wipe." >"$work/state/README"
mkfs.ext4 -q -F -L LBSTATE -U "$STATE_FS_UUID" -E root_owner=0:0 -d "$work/state" \
	"$work/state.img" "${STATE_MB}M"

step "disk: GPT + partitions"
root_mb=$ROOT_MB
[ "$(mib "$work/root.sqfs")" -le "$root_mb" ] || { echo "mkimage: root squashfs larger than ROOT_MB=$ROOT_MB" >&2; exit 1; }
esp_mb=$ESP_MB
s_esp=1
s_root=$((s_esp + esp_mb))
s_root_b=$((s_root + root_mb))
s_config=$((s_root_b + root_mb))
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

start=$(sect $s_esp), size=$(sect "$esp_mb"), type=$TYPE_ESP, uuid=$ESP_GUID, name="ESP", attrs="LegacyBIOSBootable"
start=$(sect $s_root), size=$(sect "$root_mb"), type=$TYPE_ROOT_X86_64, uuid=$ROOT_GUID, name="LBROOT_A", attrs="GUID:60"
start=$(sect $s_root_b), size=$(sect "$root_mb"), type=$TYPE_ROOT_X86_64, uuid=$ROOT_B_GUID, name="LBROOT_B", attrs="GUID:60"
start=$(sect $s_config), size=$(sect "$CONFIG_MB"), type=$TYPE_MS_BASIC_DATA, uuid=$CONFIG_GUID, name="LBCONFIG"
start=$(sect $s_state), size=$(sect "$STATE_MB"), type=$TYPE_LINUX_DATA, uuid=$STATE_GUID, name="LBSTATE"
SFDISK
# Legacy BIOS: gptmbr.bin's 440 bytes of boot code before the protective
# MBR's partition table (sfdisk left them zero).
dd if="$GPTMBR" of="$img" bs=440 count=1 conv=notrunc status=none
put() { dd if="$1" of="$img" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$work/esp.img" $s_esp
put "$work/root.sqfs" $s_root
put "$work/config.img" $s_config
put "$work/state.img" $s_state
# Where each partition starts, for tools that edit the image (mtools -i img@@OFFSET).
cat >"$out/lbd.img.layout" <<LAYOUT
ESP_OFFSET=$((s_esp * 1048576))
ROOT_OFFSET=$((s_root * 1048576))
ROOT_B_OFFSET=$((s_root_b * 1048576))
ROOT_SIZE=$((root_mb * 1048576))
IMAGE_VERSION=$IMAGE_VERSION
CONFIG_OFFSET=$((s_config * 1048576))
STATE_OFFSET=$((s_state * 1048576))
LAYOUT
cp "$kernel" "$out/lbd.vmlinuz"
cp "$initrd" "$out/lbd.initrd"

step "qcow2"
qemu-img convert -f raw -O qcow2 -c "$img" "$out/lbd.qcow2"

sfdisk --dump "$img" | grep 'start=' | sed 's/^/    /'
printf '    %-10s %6s MiB\n' ESP "$esp_mb" LBROOT_A "$root_mb" LBROOT_B "$root_mb" LBCONFIG "$CONFIG_MB" LBSTATE "$STATE_MB"
printf 'image: %s  %d MiB raw (root squashfs %s MiB, UKI %s MiB), version %s\n' "$img" "$total" \
	"$(mib "$work/root.sqfs")" "$(mib "$uki")" "$IMAGE_VERSION"
printf 'bundle: %s  %s MiB\n' "$out/lbd-update.bundle" "$(mib "$out/lbd-update.bundle")"
printf 'image: %s  %s MiB qcow2\n' "$out/lbd.qcow2" "$(mib "$out/lbd.qcow2")"
