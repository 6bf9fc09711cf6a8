#!/bin/bash
# mkuki.sh OSREL CMDLINE KERNEL INITRD OUT: a unified kernel image (UKI):
# systemd's EFI stub with the os-release, kernel command line, kernel and
# initrd as PE sections, each after the previous one, 4 KiB aligned, past
# the stub's end (what ukify does, with objcopy only).
set -euo pipefail
osrel=${1:?usage: mkuki.sh OSREL CMDLINE-FILE KERNEL INITRD OUT}
cmdline=${2:?}
kernel=${3:?}
initrd=${4:?}
out=${5:?}
STUB=${STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}
end=$(objdump -h "$STUB" | awk 'NF == 7 && $1 ~ /^[0-9]+$/ { print $3, $4 }' |
	while read -r size vma; do echo $((16#$vma + 16#$size)); done | sort -n | tail -n1)
align() { echo $(( ($1 + 4095) / 4096 * 4096 )); }
args=()
off=$(align "$end")
for s in osrel:"$osrel" cmdline:"$cmdline" linux:"$kernel" initrd:"$initrd"; do
	name=${s%%:*} file=${s#*:}
	args+=(--add-section ".$name=$file" --change-section-vma ".$name=$(printf 0x%x "$off")")
	off=$(align $((off + $(stat -Lc %s "$file"))))
done
objcopy "${args[@]}" "$STUB" "$out"
