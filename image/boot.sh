#!/bin/bash
# boot.sh IMG: boots the appliance image in QEMU with its two NICs in a
# namespace lab (see lab.sh): WAN to a client namespace, LAN to a backend
# namespace with two HTTP servers. The serial console is this terminal
# (Ctrl-A X quits QEMU; Ctrl-A C toggles the QEMU monitor).
#
# The image is booted as is: it keeps its LBSTATE partition across boots.
# Set BOOT_SNAPSHOT=1 to boot a throw-away copy instead.
#
# While it runs, from another terminal (ID is printed below):
#   ip netns exec lbdt-cl-ID curl http://198.51.100.10/      # the demo VIP
#   ip netns exec lbdt-bk-ID curl http://192.0.2.1:9100/status.json
set -euo pipefail
img=${1:?usage: boot.sh IMG}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "boot.sh: needs root (namespaces, taps)" >&2; exit 1; }
. "$here/lab.sh"
trap lab_down EXIT
trap 'exit 130' INT TERM
lab_up
if [ -n "${BOOT_SNAPSHOT:-}" ]; then
	cp --sparse=always "$img" "$LAB_DIR/boot.img"
	img=$LAB_DIR/boot.img
fi
cat >&2 <<MSG
=== lbd lab $LAB_ID: client ns $LAB_CL (198.51.100.1), backends ns $LAB_BK
    (192.0.2.11:8080, 192.0.2.12:8080), VIP of the default config $LAB_VIP:80
    try: ip netns exec $LAB_CL curl -s http://$LAB_VIP/
    Ctrl-A X quits.
MSG
lab_qemu_start "$img" stdio
