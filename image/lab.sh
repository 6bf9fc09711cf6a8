# lab.sh: the namespace lab and QEMU runner shared by boot.sh and image-test.sh.
# Source it; then lab_up, lab_qemu_start, ..., and lab_down (also on exit).
#
#   lbdt-cl-ID  client namespace, WAN side: eth0 198.51.100.1/24, DHCP server
#   lbdt-bk-ID  backend namespace, LAN side: eth0 192.0.2.2/24 (DHCP server),
#               192.0.2.11 and 192.0.2.12 each with an HTTP server on :8080
#               answering "backend-1" / "backend-2"
#   lbdt-hv-ID  where QEMU runs: taps lbdt-tw (WAN) and lbdt-tl (LAN), each
#               bridged to a veth into the client / backend namespace
#
# Nothing here touches the host's interfaces: every link lives in a
# namespace this file creates, and lab_down deletes them all.

LAB_ID=${LAB_ID:-$$}
LAB_HV=lbdt-hv-$LAB_ID
LAB_CL=lbdt-cl-$LAB_ID
LAB_BK=lbdt-bk-$LAB_ID
LAB_DIR=${LAB_DIR:-$(mktemp -d /tmp/lbdt-lab.XXXXXX)}
LAB_WAN_MAC=52:54:00:12:34:01
LAB_LAN_MAC=52:54:00:12:34:02
LAB_VIP=198.51.100.10
LAB_QEMU_PID=
OVMF_CODE=${OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
OVMF_VARS=${OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}

lab_log() { printf '[lab %s] %s\n' "$(date +%T)" "$*" >&2; }
in_cl() { ip netns exec "$LAB_CL" "$@"; }
in_bk() { ip netns exec "$LAB_BK" "$@"; }

lab_up() {
	lab_log "namespaces $LAB_HV $LAB_CL $LAB_BK, files in $LAB_DIR"
	ip netns add "$LAB_HV"
	ip netns add "$LAB_CL"
	ip netns add "$LAB_BK"
	local ns
	for ns in "$LAB_HV" "$LAB_CL" "$LAB_BK"; do ip -n "$ns" link set lo up; done
	# Hypervisor side: a bridge per NIC with the tap and a veth into the peer.
	local side peer tap br veth
	for side in w l; do
		if [ $side = w ]; then peer=$LAB_CL; else peer=$LAB_BK; fi
		tap=lbdt-t$side br=lbdt-b$side veth=lbdt-v$side
		ip -n "$LAB_HV" link add "$br" type bridge
		ip -n "$LAB_HV" tuntap add "$tap" mode tap
		ip -n "$LAB_HV" link add "$veth" type veth peer name eth0 netns "$peer"
		ip -n "$LAB_HV" link set "$tap" master "$br"
		ip -n "$LAB_HV" link set "$veth" master "$br"
		ip -n "$LAB_HV" link set "$tap" up
		ip -n "$LAB_HV" link set "$veth" up
		ip -n "$LAB_HV" link set "$br" up
		ip -n "$peer" link set eth0 up
	done
	ip -n "$LAB_CL" addr add 198.51.100.1/24 dev eth0
	ip -n "$LAB_CL" addr add 2001:db8:1::1/64 dev eth0 nodad
	ip -n "$LAB_BK" addr add 192.0.2.2/24 dev eth0
	ip -n "$LAB_BK" addr add 192.0.2.11/24 dev eth0
	ip -n "$LAB_BK" addr add 192.0.2.12/24 dev eth0
	# Backends reach the client only through the LB (snat = false services).
	ip -n "$LAB_BK" route add 198.51.100.0/24 via 192.0.2.1
	# DHCP for the out-of-the-box config (both NICs on DHCP).
	in_cl dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=0 --user=root \
		--interface=eth0 --bind-interfaces --dhcp-range=198.51.100.100,198.51.100.199,1h \
		--dhcp-option=option:router,198.51.100.1 --dhcp-leasefile="$LAB_DIR/wan.leases" \
		--pid-file="$LAB_DIR/dnsmasq-wan.pid" --log-facility="$LAB_DIR/dnsmasq-wan.log" &
	in_bk dnsmasq --keep-in-foreground --no-resolv --no-hosts --port=0 --user=root \
		--interface=eth0 --bind-interfaces --dhcp-range=192.0.2.100,192.0.2.199,1h \
		--dhcp-leasefile="$LAB_DIR/lan.leases" \
		--pid-file="$LAB_DIR/dnsmasq-lan.pid" --log-facility="$LAB_DIR/dnsmasq-lan.log" &
	lab_backend_start 1
	lab_backend_start 2
}

# lab_backend_start N: HTTP server on 192.0.2.1N:8080 answering "backend-N".
lab_backend_start() {
	local n=$1 d=$LAB_DIR/www$1
	mkdir -p "$d"
	echo "backend-$n" >"$d/index.html"
	# Not through in_bk: $! must be the server itself (ip netns exec execs it).
	ip netns exec "$LAB_BK" python3 -m http.server --bind "192.0.2.1$n" --directory "$d" 8080 \
		>"$LAB_DIR/backend$n.log" 2>&1 &
	echo $! >"$LAB_DIR/backend$n.pid"
}

lab_backend_stop() {
	local f=$LAB_DIR/backend$1.pid
	[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	rm -f "$f"
}

# lab_qemu_start IMG SERIAL [APPEND]: boots IMG; SERIAL is "stdio"
# (interactive) or a log file path. With APPEND, boots the kernel and initrd
# next to IMG (IMG without .img + .vmlinuz/.initrd) directly with that
# command line instead of the unified kernel image on the ESP.
# LAB_FIRMWARE=bios boots with QEMU's default firmware, SeaBIOS (legacy
# BIOS, as Proxmox VE and VirtualBox VMs do by default) instead of OVMF.
# Sets LAB_QEMU_PID (not for stdio, which runs in the foreground).
# With LAB_SERIAL_IN=1 the serial port is also a socket ($LAB_DIR/serial.sock)
# that lab_serial_send types into; SERIAL still gets everything the guest
# prints.
lab_qemu_start() {
	local img=$1 serial=$2 append=${3:-} accel=tcg bootindex=0
	# QEMU's direct kernel boot (-kernel) takes boot index 0 itself.
	[ -n "$append" ] && bootindex=1
	if [ -w /dev/kvm ] && [ -r /dev/kvm ]; then accel=kvm; fi
	local args=(-machine q35 -accel "$accel" -m "${QEMU_MEM:-1024}" -smp "${QEMU_SMP:-2}")
	if [ "${LAB_FIRMWARE:-uefi}" != bios ]; then
		cp "$OVMF_VARS" "$LAB_DIR/OVMF_VARS.fd"
		args+=(
			-drive "if=pflash,format=raw,unit=0,readonly=on,file=$OVMF_CODE"
			-drive "if=pflash,format=raw,unit=1,file=$LAB_DIR/OVMF_VARS.fd"
		)
	fi
	args+=(
		-drive "if=none,id=disk,format=raw,file=$img"
		-device "virtio-blk-pci,drive=disk,bootindex=$bootindex"
		-netdev tap,id=wan,ifname=lbdt-tw,script=no,downscript=no
		-device "virtio-net-pci,netdev=wan,mac=$LAB_WAN_MAC"
		-netdev tap,id=lan,ifname=lbdt-tl,script=no,downscript=no
		-device "virtio-net-pci,netdev=lan,mac=$LAB_LAN_MAC"
		-monitor "unix:$LAB_DIR/monitor,server,nowait"
		-display "${QEMU_DISPLAY:-none}"
	)
	# LAB_NO_REBOOT=1: a guest reboot ends QEMU instead (the caller powers
	# it on again): OVMF's warm reset took minutes under a loaded TCG host,
	# a cold start seconds. The disk, where systemd-boot keeps its boot
	# counters, is the same either way.
	[ "${LAB_NO_REBOOT:-}" = 1 ] && args+=(-no-reboot)
	if [ -n "$append" ]; then
		args+=(-kernel "${LAB_KERNEL:-${img%.img}.vmlinuz}" -initrd "${LAB_INITRD:-${img%.img}.initrd}" -append "$append")
	fi
	lab_log "qemu ($accel, ${LAB_FIRMWARE:-uefi}) $img"
	if [ "$serial" = stdio ]; then
		ip netns exec "$LAB_HV" qemu-system-x86_64 "${args[@]}" -serial mon:stdio ${QEMU_EXTRA:-}
	else
		# LAB_SERIAL_APPEND=1: the log goes on after what is there (a guest
		# powered on again after -no-reboot).
		local app=off
		if [ "${LAB_SERIAL_APPEND:-}" = 1 ]; then app=on; else : >"$serial"; fi
		local serial_args=(-chardev "file,id=ser0,path=$serial,append=$app" -serial chardev:ser0)
		if [ "${LAB_SERIAL_IN:-}" = 1 ]; then
			rm -f "$LAB_DIR/serial.sock"
			serial_args=(-chardev "socket,id=ser0,path=$LAB_DIR/serial.sock,server=on,wait=off,logfile=$serial,logappend=$app"
				-serial chardev:ser0)
		fi
		ip netns exec "$LAB_HV" qemu-system-x86_64 "${args[@]}" "${serial_args[@]}" ${QEMU_EXTRA:-} \
			</dev/null >"$LAB_DIR/qemu.log" 2>&1 &
		LAB_QEMU_PID=$!
	fi
}

# lab_serial_send LINE: types LINE and Enter on the serial port (LAB_SERIAL_IN=1).
lab_serial_send() {
	printf '%s\n' "$1" | socat -t 1 - "UNIX-CONNECT:$LAB_DIR/serial.sock" >/dev/null 2>&1
}

# lab_qemu_stop [TIMEOUT]: ACPI power-off (a clean shutdown, so the state
# partition is consistent), killed after TIMEOUT seconds.
lab_qemu_stop() {
	local t=${1:-60} i
	[ -n "$LAB_QEMU_PID" ] || return 0
	if kill -0 "$LAB_QEMU_PID" 2>/dev/null; then
		echo system_powerdown | socat - "UNIX-CONNECT:$LAB_DIR/monitor" >/dev/null 2>&1
		for ((i = 0; i < t; i++)); do
			kill -0 "$LAB_QEMU_PID" 2>/dev/null || break
			sleep 1
		done
		if kill -0 "$LAB_QEMU_PID" 2>/dev/null; then
			lab_log "qemu did not power off in ${t}s: killing it"
			kill "$LAB_QEMU_PID" 2>/dev/null
		fi
	fi
	wait "$LAB_QEMU_PID" 2>/dev/null
	LAB_QEMU_PID=
}

lab_down() {
	lab_qemu_stop 5
	lab_backend_stop 1
	lab_backend_stop 2
	local f
	for f in "$LAB_DIR"/dnsmasq-*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	# Anything left in the namespaces (started by this lab) goes with them.
	local ns pid
	for ns in "$LAB_CL" "$LAB_BK" "$LAB_HV"; do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
	done
	sleep 0.5
	for ns in "$LAB_CL" "$LAB_BK" "$LAB_HV"; do
		ip netns del "$ns" 2>/dev/null
	done
	[ -n "${LAB_KEEP:-}" ] || rm -rf "$LAB_DIR"
}
