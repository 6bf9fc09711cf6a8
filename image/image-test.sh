#!/bin/bash
# image-test.sh IMG: boots a copy of the appliance image under QEMU with test
# configs written into its LBCONFIG partition (mtools, no mount) and checks
# from outside, through the namespace lab of lab.sh:
#
#   boot 1 (config A: static addresses, one rr service over 2 backends)
#     ready        the serial console shows "lbd-status: READY"
#     vip          the VIP answers from the client namespace
#     spread       both backends answer
#     status_http  /status.json answers on the LAN address (status_listen)
#     health_out   a stopped backend stops getting connections
#   boot 2 (config B, edited on the partition while powered off)
#     ready
#     edit_read    lbd reports the 2 services of config B (its READY status text)
#     edit_applied port 80 now only reaches backend-2, new port 81 -> backend-1
#   boot 3 (a broken lb.toml)
#     ready        lbd still comes up
#     error_shown  lbd's own status page (/status.json, rendered by lbd) lists
#                  /config/lb.toml:LINE:COL among its config errors
#     error_logged lbd's own log (its journal, on the serial console as
#                  "lbd: ...") names /config/lb.toml:LINE:COL
#     last_good    the VIP keeps serving config B (the last good one, from LBSTATE)
#   boot 4 (kernel booted directly with lbd.config=/config/override.toml, a
#   config C unlike A and B; lb.toml on the partition is still the broken one)
#     override_status   /status.json: config path /config/override.toml and
#                       C's service "web82"
#     override_traffic  port 80 reaches backend-1 only (B: backend-2 only),
#                       port 82 (only in C) reaches backend-2
#   and the systemd watchdog, through the root shell on the serial console
#   that C turns on (console_login = true):
#     watchdog_fed      35 s after READY lbd.service has WatchdogUSec=30s and
#                       no restart: systemd accepts lbd's keep-alives
#     watchdog_restart  lbd frozen with SIGSTOP: systemd's watchdog restarts
#                       it ("Watchdog timeout" in its journal, restarts=1),
#                       and the new lbd serves config C
#
#   boot 5 (UEFI, systemd-boot, slot A; config B with the serial shell; a
#   second disk holds an update bundle of version IMAGE_VERSION.1)
#     update       `lbd update /dev/disk/by-id/virtio-lbdbundle` writes slot B
#     new_version  after `reboot`: /usr/lib/os-release says IMAGE_VERSION.1,
#                  the kernel booted root=PARTLABEL=LBROOT_B
#     blessed      lbd READY: the boot check passed and systemd-bless-boot
#                  renamed lbd-b+0-1.efi to lbd-b.efi (EFI/Linux on the ESP)
#     serves       the VIP answers from slot B
#   boot 6 (a broken bundle, IMAGE_VERSION.2, whose lbd never starts, dropped
#   on the config partition as lbd-update.bundle)
#     installed      lbd-update-config.service writes it into slot A, reboots
#     trial_failed   slot A's boot check gives up: "FAILED its trial boot"
#     rolled_back    systemd-boot boots slot B again by itself; the console
#                    says "ROLLED BACK" and why; READY
#     serves         the VIP answers again
#     bundle_removed the bundle file is gone from the config partition
#   boot 7 (config A plus [ha] with a peer that never answers, and the serial
#   shell)
#     ha_master    keepalived (lbd's child) makes the lone node MASTER
#     ha_serves    the VIP keepalived added serves both backends
#     ha_metrics   /metrics: lbd_ha_role{role="MASTER"} 1
#     edit         `lbd edit` with a scripted $EDITOR writes the read-only
#                  /config/lb.toml (remounted rw for the write, ro after),
#                  then diff + reload: port 80 reaches backend-2 only
#   boot 8 (legacy BIOS: QEMU's default firmware, SeaBIOS, on a fresh copy
#   of the image; config A with the serial shell; the "new" bundle on a
#   second disk)
#     ready        READY on the serial console
#     bios         no /sys/firmware/efi, syslinux started slot a
#                  (BOOT_IMAGE=/syslinux/lbd-a.linux root=PARTLABEL=LBROOT_A)
#     serves       the VIP spreads over both backends
#     update       `lbd update` under BIOS writes slot b and its BIOS files;
#                  syslinux.cfg boots slot b next
#     new_version  after `reboot`: syslinux booted slot b, IMAGE_VERSION.1
#     counted      early in that boot lbd-boot-sync used the try
#                  (lbd-b+1.efi -> lbd-b+0-1.efi)
#     blessed      the boot check passed and renamed the entry itself
#                  (lbd-b.efi); syslinux.cfg: DEFAULT lbd-b
#     serves_b     the VIP answers from slot b
#   boot 9 (legacy BIOS, after boot 8: the broken bundle dropped on the
#   config partition)
#     installed      installed into slot a, reboot into it
#     trial_failed   slot a's boot check: "FAILED its trial boot", marked bad
#     rolled_back    syslinux boots slot b again by itself ("ROLLED BACK"),
#                    READY
#     serves         the VIP answers again
#
# Each check prints PASS or FAIL with what it saw; the summary lists them
# all. The serial console logs are kept in out/image-test/ (IMAGE_TEST_LOGS). Exit status 0 only if every check passed. The whole run is
# time-boxed (IMAGE_TEST_TIMEOUT, default 1500 s; BOOT_TIMEOUT per boot, 300 s).
set -uo pipefail
img_src=${1:?usage: image-test.sh IMG}
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "image-test: needs root" >&2; exit 1; }
. "$here/lab.sh"
. "${img_src}.layout"
BOOT_TIMEOUT=${BOOT_TIMEOUT:-300}
export MTOOLS_SKIP_CHECK=1

results=()
pass() { results+=("PASS $1: $2"); echo "PASS $1: $2"; }
fail() { results+=("FAIL $1: $2"); echo "FAIL $1: $2"; }
check() { # check NAME DESCRIPTION-ON-PASS DESCRIPTION-ON-FAIL CMD...
	local name=$1 ok=$2 ko=$3; shift 3
	if "$@"; then pass "$name" "$ok"; else fail "$name" "$ko"; fi
}
summary() {
	echo
	echo "=== image-test summary ($(basename "$img_src"))"
	printf '%s\n' "${results[@]}"
	if [ -n "${ready_times:-}" ]; then
		echo "boot-to-READY (s, per boot):$ready_times; median $(printf '%s\n' $ready_times | sort -n |
			awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }') s"
	fi
}
LOGS=${IMAGE_TEST_LOGS:-$(dirname "$img_src")/image-test}
rm -rf "$LOGS"
finish() {
	mkdir -p "$LOGS"
	cp "$LAB_DIR"/serial-*.log "$LAB_DIR"/*.toml "$LOGS"/ 2>/dev/null
	lab_down
	summary | tee "$LOGS/summary.txt"
	echo "serial console logs: $LOGS/"
}
trap finish EXIT
trap 'echo "image-test: interrupted or timed out"; exit 124' INT TERM
( sleep "${IMAGE_TEST_TIMEOUT:-1500}"; echo "image-test: time box reached"; kill -TERM $$ ) 2>/dev/null &
watchdog=$!
trap 'kill $watchdog 2>/dev/null; finish' EXIT

lab_up
img=$LAB_DIR/test.img
cp --sparse=always "$img_src" "$img"
serial=

put_config() { # put_config FILE: lb.toml on the LBCONFIG partition, as a user would
	mcopy -o -i "$img@@$CONFIG_OFFSET" "$1" ::/lb.toml
}

# boot N [APPEND]: starts QEMU, waits for the READY line; sets serial and
# records the time. With APPEND, the kernel is booted directly with it.
boot() {
	serial=$LAB_DIR/serial-$1.log
	local t0=$SECONDS
	lab_qemu_start "$img" "$serial" "${2:-}"
	while (( SECONDS - t0 < BOOT_TIMEOUT )); do
		if grep -q 'lbd-status: READY' "$serial" 2>/dev/null; then
			ready_times+=" $((SECONDS - t0))"
			pass "boot$1.ready" "READY on the serial console after $((SECONDS - t0)) s"
			return 0
		fi
		kill -0 "$LAB_QEMU_PID" 2>/dev/null || break
		sleep 1
	done
	fail "boot$1.ready" "no READY line within ${BOOT_TIMEOUT}s; last serial lines:"
	tail -n 25 "$serial" | sed 's/^/    | /'
	return 1
}

# get URL: one request over a new connection from the client namespace.
get() { in_cl curl -s --max-time 2 "$1" 2>/dev/null; }

# guest NAME EXPR [SECONDS]: runs `echo "@NAME=EXPR@"` in the root shell on
# the serial console (boot 4) and prints what came back between the markers.
# NAME must be new for each call (the serial log keeps earlier answers).
# The line is typed again every 5 s until the answer comes: the serial
# login starts after lbd (lbd-setup.service starts it, D-Bus and logind
# run behind lbd), so right after READY the shell may not be there yet and
# a line typed into the void is lost, or half of it reaches the shell
# (once its tail, an open quote, left bash waiting for the rest forever).
# So each try starts with Ctrl-C, which drops any half-typed line; the
# pause lets the tty flush before the line comes. EXPR must only read.
guest() {
	local name=$1 t0=$SECONDS v sent=-5
	while (( SECONDS - t0 < ${3:-30} )); do
		if (( SECONDS - sent >= 5 )); then
			printf '\003' | socat -t 1 - "UNIX-CONNECT:$LAB_DIR/serial.sock" >/dev/null 2>&1
			sleep 0.5
			lab_serial_send "echo \"@$name=$2@\""
			sent=$SECONDS
		fi
		v=$(grep -a -o "@$name=[^@\$]*@" "$serial" | tail -n 1)
		if [ -n "$v" ]; then
			v=${v#@"$name"=}
			echo "${v%@}"
			return 0
		fi
		sleep 1
	done
	return 1
}

# status_json: lbd's /status.json, from the LAN side (status_listen).
status_json() { in_bk curl -s --max-time 3 http://192.0.2.1:9100/status.json 2>/dev/null; }

# json_py EXPR: evaluates a Python expression over the JSON on stdin (as d);
# prints its value, or nothing when the JSON or the expression fails.
json_py() { python3 -c 'import json, sys
try:
    d = json.load(sys.stdin)
    v = eval(sys.argv[1])
except Exception:
    sys.exit(1)
print(v if isinstance(v, str) else json.dumps(v))' "$1" 2>/dev/null; }

# config_errors: the config errors lbd reports in /status.json, one a line.
config_errors() { status_json | json_py '"\n".join(d["config"].get("last_errors") or [d["config"].get("last_error") or ""])'; }

# tally URL N: N requests; prints "backend-1=X backend-2=Y fail=Z".
tally() {
	local i r b1=0 b2=0 f=0
	for ((i = 0; i < $2; i++)); do
		r=$(get "$1")
		case $r in backend-1) b1=$((b1 + 1)) ;; backend-2) b2=$((b2 + 1)) ;; *) f=$((f + 1)) ;; esac
	done
	echo "backend-1=$b1 backend-2=$b2 fail=$f"
}

# wait_vip URL SECONDS: until the URL answers at all (health checks must rise first).
wait_vip() {
	local t0=$SECONDS
	while (( SECONDS - t0 < $2 )); do
		[ -n "$(get "$1")" ] && return 0
		sleep 1
	done
	return 1
}

# until_only URL BACKEND SECONDS: until 10 requests in a row all reach BACKEND.
until_only() {
	local t0=$SECONDS
	while (( SECONDS - t0 < $3 )); do
		[ "$(tally "$1" 10)" = "$2" ] && return 0
		sleep 1
	done
	return 1
}

# IMAGE_TEST_BOOTS="5 6" runs only those boots (while working on them);
# boot 6 expects what boot 5 leaves (slot B good), boot 4 the config of 3.
want() { [[ " ${IMAGE_TEST_BOOTS:-1 2 3 4 5 6 7 8 9} " == *" $1 "* ]]; }

cfg_a=$LAB_DIR/a.toml
cat >"$cfg_a" <<TOML
# image-test config A
[appliance]
hostname = "lbd-test"
status_listen = "192.0.2.1:9100"

[[interface]]
name = "wan"
mac = "$LAB_WAN_MAC"
addresses = ["198.51.100.2/24"]

[[interface]]
name = "lan"
mac = "$LAB_LAN_MAC"
addresses = ["192.0.2.1/24"]

[[service]]
name = "web"
vip = "$LAB_VIP"
port = 80
protocol = "tcp"
interface = "wan"
scheduler = "rr"
snat = true

  [service.health]
  type = "http"
  path = "/"
  interval = "1s"
  timeout = "500ms"
  rise = 1
  fall = 2

  [[service.backend]]
  address = "192.0.2.11:8080"

  [[service.backend]]
  address = "192.0.2.12:8080"
TOML

cfg_b=$LAB_DIR/b.toml
# B: port 80 keeps only backend-2; a new service on port 81 goes to backend-1.
awk '/^[ \t]*\[\[service.backend\]\]$/ && !seen { seen = 1; getline; next } { print }' "$cfg_a" |
	sed 's/image-test config A/image-test config B/' >"$cfg_b"
cat >>"$cfg_b" <<TOML

[[service]]
name = "web81"
vip = "$LAB_VIP"
port = 81
protocol = "tcp"
interface = "wan"
scheduler = "rr"

  [service.health]
  type = "tcp"
  interval = "1s"
  rise = 1
  fall = 2

  [[service.backend]]
  address = "192.0.2.11:8080"
TOML

cfg_broken=$LAB_DIR/broken.toml
# Line 5 gets an unknown key: lbd must name /config/lb.toml:5:COL.
awk 'NR == 5 { print "no_such_key = 1" } { print }' "$cfg_b" >"$cfg_broken"
broken_line=5

if want 1; then
### boot 1: config A
put_config "$cfg_a"
if boot 1; then
	if grep -q 'lbd placeholder' "$serial"; then
		echo "NOTE: the image runs the placeholder lbd: data-plane checks will fail"
	fi
	vip_ok=0
	if wait_vip "http://$LAB_VIP/" 45; then
		vip_ok=1
		pass boot1.vip "VIP $LAB_VIP:80 answers from the client namespace"
		t=$(tally "http://$LAB_VIP/" 20)
		case $t in
		*"backend-1=0 "*|*"backend-2=0 "*) fail boot1.spread "20 requests: $t" ;;
		*) pass boot1.spread "20 requests: $t" ;;
		esac
	else
		fail boot1.vip "VIP $LAB_VIP:80 did not answer within 45 s"
		fail boot1.spread "no VIP"
	fi
	if in_bk curl -s --max-time 3 http://192.0.2.1:9100/status.json | grep -q '"services"'; then
		pass boot1.status_http "/status.json on 192.0.2.1:9100 lists services"
	else
		fail boot1.status_http "no /status.json on 192.0.2.1:9100"
	fi
	lab_backend_stop 2
	if [ "$vip_ok" != 1 ]; then
		fail boot1.health_out "no VIP to check against"
	elif until_only "http://$LAB_VIP/" "backend-1=10 backend-2=0 fail=0" 20; then
		pass boot1.health_out "backend-2 stopped: 10/10 requests reach backend-1"
	else
		fail boot1.health_out "backend-2 stopped; after 20 s: $(tally "http://$LAB_VIP/" 10)"
	fi
	lab_backend_start 2
fi
lab_qemu_stop 90
fi  # boot 1

if want 2; then
### boot 2: config B, edited on the partition while the appliance is off
put_config "$cfg_b"
if boot 2; then
	if grep -a 'lbd-status: READY' "$serial" | grep -q '2 services'; then
		pass boot2.edit_read "lbd reports 2 services after the edit"
	else
		fail boot2.edit_read "READY line: $(grep -a -m1 'lbd-status: READY' "$serial" | tr -d '\r')"
	fi
	if wait_vip "http://$LAB_VIP/" 30 && until_only "http://$LAB_VIP/" "backend-1=0 backend-2=10 fail=0" 20 &&
		[ "$(get "http://$LAB_VIP:81/")" = backend-1 ]; then
		pass boot2.edit_applied "port 80 -> backend-2 only, port 81 -> backend-1"
	else
		fail boot2.edit_applied "port 80: $(tally "http://$LAB_VIP/" 10); port 81: '$(get "http://$LAB_VIP:81/")'"
	fi
fi
lab_qemu_stop 90
fi  # boot 2

if want 3; then
### boot 3: a broken lb.toml
put_config "$cfg_broken"
boot 3
# The error as lbd reports it: its status page (nothing else on the appliance
# renders /status.json) and its own log lines ("lbd: " on the serial
# console), not a check the test or a script runs on the file.
t0=$SECONDS errs=""
while (( SECONDS - t0 < 30 )); do
	errs=$(config_errors)
	grep -q "^/config/lb.toml:$broken_line:[0-9]" <<<"$errs" && break
	sleep 1
done
if grep -q "^/config/lb.toml:$broken_line:[0-9]" <<<"$errs"; then
	pass boot3.error_shown "/status.json config errors: $(grep -m1 "^/config/lb.toml:$broken_line:" <<<"$errs")"
else
	fail boot3.error_shown "/status.json lists no /config/lb.toml:$broken_line:COL error; it has: '${errs:-(no answer)}'"
fi
if grep -a -q "^lbd: .*/config/lb.toml:$broken_line:[0-9]" "$serial"; then
	pass boot3.error_logged "lbd's log on the serial console: $(grep -a -m1 "^lbd: .*/config/lb.toml:$broken_line:" "$serial" | tr -d '\r')"
else
	fail boot3.error_logged "no lbd log line with /config/lb.toml:$broken_line:COL on the serial console"
	grep -a '^lbd' "$serial" | tail -n 8 | sed 's/^/    | /'
fi
if wait_vip "http://$LAB_VIP/" 30 && until_only "http://$LAB_VIP/" "backend-1=0 backend-2=10 fail=0" 10; then
	pass boot3.last_good "the VIP serves config B (last good) despite the broken file"
else
	fail boot3.last_good "VIP with the broken file: $(tally "http://$LAB_VIP/" 10)"
fi
lab_qemu_stop 90
fi  # boot 3

if want 4; then
### boot 4: lbd.config= on the kernel command line names another file
# Config C: port 80 over backend-1 only (B, the last good config, has only
# backend-2 there) and a service "web82" on port 82 to backend-2 that no
# other config has. lb.toml stays the broken file of boot 3, so an lbd that
# ignored lbd.config= would serve B from LBSTATE: both checks would fail.
cfg_c=$LAB_DIR/override.toml
awk '/^[ \t]*\[\[service.backend\]\]$/ { hold = $0; next }
	hold != "" { if ($0 !~ /192\.0\.2\.12/) { print hold; print } hold = ""; next }
	{ print }' "$cfg_a" | sed 's/image-test config A/image-test config C (lbd.config= override)/' |
	sed 's/^\[appliance\]$/[appliance]\nconsole_login = true/' >"$cfg_c"
cat >>"$cfg_c" <<TOML

[[service]]
name = "web82"
vip = "$LAB_VIP"
port = 82
protocol = "tcp"
interface = "wan"
scheduler = "rr"

  [service.health]
  type = "tcp"
  interval = "1s"
  rise = 1
  fall = 2

  [[service.backend]]
  address = "192.0.2.12:8080"
TOML
mcopy -o -i "$img@@$CONFIG_OFFSET" "$cfg_c" ::/override.toml
cmdline=$(cat "$(dirname "$img_src")/image/cmdline")
if LAB_SERIAL_IN=1 LAB_KERNEL=${img_src%.img}.vmlinuz LAB_INITRD=${img_src%.img}.initrd \
	boot 4 "$cmdline lbd.config=/config/override.toml"; then
	t_ready=$SECONDS
	t0=$SECONDS sj="" seen=""
	while (( SECONDS - t0 < 30 )); do
		sj=$(status_json)
		seen="path=$(json_py 'd["config"]["path"]' <<<"$sj") services=$(json_py '",".join(s["name"] for s in d["services"])' <<<"$sj")"
		[ "$seen" = "path=/config/override.toml services=web,web82" ] && break
		sleep 1
	done
	if [ "$seen" = "path=/config/override.toml services=web,web82" ]; then
		pass boot4.override_status "/status.json: $seen"
	else
		fail boot4.override_status "/status.json: '$seen', want path=/config/override.toml services=web,web82"
	fi
	if wait_vip "http://$LAB_VIP/" 30 && until_only "http://$LAB_VIP/" "backend-1=10 backend-2=0 fail=0" 20 &&
		wait_vip "http://$LAB_VIP:82/" 20 && [ "$(tally "http://$LAB_VIP:82/" 5)" = "backend-1=0 backend-2=5 fail=0" ]; then
		pass boot4.override_traffic "config C serves: port 80 -> backend-1 only, port 82 -> backend-2"
	else
		fail boot4.override_traffic "port 80: $(tally "http://$LAB_VIP/" 10); port 82: $(tally "http://$LAB_VIP:82/" 5)"
	fi

	# The watchdog. A shell first (agetty starts after lbd reads C).
	shell=""
	for i in $(seq 30); do
		shell=$(guest "sh$i" '$((6*7))' 3) && break
	done
	if [ "$shell" != 42 ]; then
		fail boot4.watchdog_fed "no root shell on the serial console (console_login = true)"
		fail boot4.watchdog_restart "no root shell"
	else
		# Past WatchdogSec since READY: without accepted keep-alives
		# systemd would have restarted lbd by now.
		while (( SECONDS - t_ready < 35 )); do sleep 1; done
		fed=$(guest fed '$(systemctl show -p WatchdogUSec --value lbd.service) restarts=$(systemctl show -p NRestarts --value lbd.service)')
		if [ "$fed" = "30s restarts=0" ]; then
			pass boot4.watchdog_fed "$((SECONDS - t_ready)) s after READY: WatchdogUSec=$fed"
		else
			fail boot4.watchdog_fed "$((SECONDS - t_ready)) s after READY: WatchdogUSec=${fed:-(no answer)}, want 30s restarts=0"
		fi
		pid=$(guest pid '$(systemctl show -p MainPID --value lbd.service)')
		t_stop=$SECONDS
		lab_serial_send "kill -STOP $pid"
		while (( SECONDS - t_stop < 120 )) &&
			! grep -a -q 'lbd-status: READY config=/config/override.toml restarts=1 ' "$serial"; do
			sleep 1
		done
		restarted=$((SECONDS - t_stop))
		timeouts=$(guest timeouts '$(journalctl -b -u lbd.service | grep -c "Watchdog timeout")')
		if grep -a -q 'lbd-status: READY config=/config/override.toml restarts=1 ' "$serial" &&
			[ "${timeouts:-0}" -ge 1 ] && until_only "http://$LAB_VIP/" "backend-1=10 backend-2=0 fail=0" 20; then
			pass boot4.watchdog_restart "lbd (pid $pid) frozen: 'Watchdog timeout', READY again after $restarted s, serving config C"
		else
			fail boot4.watchdog_restart "after SIGSTOP of pid '$pid': $restarted s, 'Watchdog timeout' x${timeouts:-?}, port 80: $(tally "http://$LAB_VIP/" 10)"
			grep -a 'lbd-status' "$serial" | tail -n 4 | tr -d '\r' | sed 's/^/    | /'
		fi
	fi
else
	fail boot4.override_status "no boot"
	fail boot4.override_traffic "no boot"
	fail boot4.watchdog_fed "no boot"
	fail boot4.watchdog_restart "no boot"
fi
lab_qemu_stop 90
fi  # boot 4

### A/B updates (boots 5 and 6)
# Two bundles made from this build's root and kernel: "new" only carries a
# newer IMAGE_VERSION; "broken" is newer still, and its lbd never starts
# (lbd-start exits 1), so lbd is never READY.
mkbundles() {
	local troot=$LAB_DIR/troot base=$(dirname "$img_src")
	unsquashfs -q -n -d "$troot" "$base/image/root.sqfs" >/dev/null || return 1
	local v name
	for name in new broken; do
		if [ $name = new ]; then v=$IMAGE_VERSION.1; else v=$IMAGE_VERSION.2; fi
		sed -i "s/^IMAGE_VERSION=.*/IMAGE_VERSION=$v/" "$troot/usr/lib/os-release"
		if [ $name = broken ]; then
			printf '#!/bin/sh\necho "lbd-start: this test bundle is deliberately broken: lbd does not start" >&2\nexit 1\n' \
				>"$troot/usr/lib/lbd/lbd-start"
		fi
		sed "s/^IMAGE_VERSION=.*/IMAGE_VERSION=$v/" "$base/image/os-release" >"$LAB_DIR/osrel-$name"
		mksquashfs "$troot" "$LAB_DIR/root-$name.sqfs" -noappend -quiet -no-progress -comp zstd \
			-Xcompression-level 3 -b 256K -all-root >/dev/null || return 1
		"$here/mkuki.sh" "$LAB_DIR/osrel-$name" "$base/image/cmdline" "$base/lbd.vmlinuz" "$base/lbd.initrd" \
			"$LAB_DIR/uki-$name.efi" || return 1
		"$here/mkbundle.sh" "$LAB_DIR/root-$name.sqfs" "$LAB_DIR/uki-$name.efi" "$v" test "$LAB_DIR/$name.bundle" || return 1
		rm -f "$LAB_DIR/root-$name.sqfs"
	done
	rm -rf "$troot"
}

# wait_serial PATTERN SECONDS [AFTER-LINE]: until PATTERN (grep -E) appears
# on the serial console (past line AFTER-LINE); sets WS_LINE to its line
# number. Not in $(...): it may power the guest on again (LAB_QEMU_PID).
wait_serial() {
	local t0=$SECONDS n
	while (( SECONDS - t0 < $2 )); do
		n=$(tail -n +"$(( ${3:-0} + 1 ))" "$serial" | grep -a -n -E -m1 "$1" | cut -d: -f1)
		if [ -n "$n" ]; then WS_LINE=$(( n + ${3:-0} )); return 0; fi
		if ! kill -0 "$LAB_QEMU_PID" 2>/dev/null; then
			# With LAB_NO_REBOOT=1 a guest reboot ends QEMU: power on again.
			[ "${LAB_NO_REBOOT:-}" = 1 ] || return 1
			wait "$LAB_QEMU_PID" 2>/dev/null
			echo "image-test: the guest rebooted ($((SECONDS - t0)) s into this wait): powering it on again" >&2
			LAB_SERIAL_APPEND=1 lab_qemu_start "$img" "$serial"
		fi
		sleep 1
	done
	return 1
}

t_bundles=$SECONDS
if ! want 5 && ! want 6 && ! want 8 && ! want 9; then
	:
elif mkbundles; then
	echo "test bundles: $(ls -s --block-size=M "$LAB_DIR"/*.bundle | tr '\n' ' ') in $((SECONDS - t_bundles)) s"
else
	echo "image-test: could not make the test bundles"
fi

if want 5; then
### boot 5: `lbd update` on the running appliance, the bundle on a second disk
cfg_u=$LAB_DIR/update.toml
sed 's/^\[appliance\]$/[appliance]\nconsole_login = true/' "$cfg_b" >"$cfg_u"
put_config "$cfg_u"
export LAB_SERIAL_IN=1 LAB_NO_REBOOT=1 QEMU_EXTRA="-drive if=none,id=bundle,format=raw,readonly=on,file=$LAB_DIR/new.bundle -device virtio-blk-pci,drive=bundle,serial=lbdbundle"
if [ -f "$LAB_DIR/new.bundle" ] && boot 5; then
	shell=""
	for i in $(seq 30); do shell=$(guest "u$i" '$((6*7))' 3) && break; done
	before=$(guest st0 '$(lbd update --status | tr "\n" "|")' 30)
	lab_serial_send "lbd update /dev/disk/by-id/virtio-lbdbundle; echo @upd=\$?@"
	l_upd=0
	wait_serial '@upd=[0-9]+@' 240 && l_upd=$WS_LINE
	upd=$(grep -a -o '@upd=[0-9]*@' "$serial" | tail -n1)
	if [ "$shell" = 42 ] && [ "$upd" = "@upd=0@" ] && grep -a -q "slot b now holds $IMAGE_VERSION.1" "$serial"; then
		pass boot5.update "lbd update wrote $IMAGE_VERSION.1 into slot b: $(grep -a -m1 'slot b now holds' "$serial" | tr -d '\r')"
	else
		fail boot5.update "shell '$shell', lbd update exit '$upd'; status before: $before"
		grep -a -E 'lbd update|bundle|slot' "$serial" | tail -n 8 | tr -d '\r' | sed 's/^/    | /'
	fi
	lab_serial_send "reboot"
	if wait_serial 'lbd-status: READY' "$BOOT_TIMEOUT" "$l_upd"; then
		# The shell comes back after the reboot (console_login = true).
		for i in $(seq 30); do guest "v$i" '$((6*7))' 3 >/dev/null && break; done
		ver=$(guest ver '$(. /usr/lib/os-release; echo $IMAGE_VERSION) $(grep -o "root=[^ ]*" /proc/cmdline)' 30)
		good=""
		for i in $(seq 20); do
			good=$(guest "g$i" '$(ls /efi/EFI/Linux | tr "\n" " ")' 5) && [ "${good% }" = "lbd-a.efi lbd-b.efi" ] && break
			sleep 3
		done
		if [ "$ver" = "$IMAGE_VERSION.1 root=PARTLABEL=LBROOT_B" ]; then
			pass boot5.new_version "after the reboot: image $ver"
		else
			fail boot5.new_version "after the reboot: '$ver', want '$IMAGE_VERSION.1 root=PARTLABEL=LBROOT_B'"
		fi
		if [ "${good% }" = "lbd-a.efi lbd-b.efi" ] && grep -a -q 'lbd-boot-check: slot b .*this boot is good' "$serial"; then
			pass boot5.blessed "lbd READY: the boot check passed and systemd-bless-boot renamed lbd-b+0-1.efi to lbd-b.efi"
		else
			fail boot5.blessed "entries on the ESP: '$good'; boot check: $(grep -a -m1 'lbd-boot-check' "$serial" | tr -d '\r')"
		fi
		if wait_vip "http://$LAB_VIP/" 30 && until_only "http://$LAB_VIP/" "backend-1=0 backend-2=10 fail=0" 20; then
			pass boot5.serves "slot b serves config B"
		else
			fail boot5.serves "port 80 on slot b: $(tally "http://$LAB_VIP/" 10)"
		fi
	else
		fail boot5.new_version "no READY after the reboot into slot b"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
		fail boot5.blessed "no boot"
		fail boot5.serves "no boot"
	fi
else
	fail boot5.update "no boot or no bundle"
fi
lab_qemu_stop 90
unset LAB_SERIAL_IN QEMU_EXTRA
fi  # boot 5

if want 6; then
### boot 6: a broken bundle from the config partition; the appliance rolls back
# Running slot b ($IMAGE_VERSION.1). lbd-update-config.service installs the
# bundle into slot a and reboots; slot a's lbd never gets READY, the boot
# check marks it bad and reboots, and systemd-boot boots slot b again.
if [ -f "$LAB_DIR/broken.bundle" ]; then
	mcopy -o -i "$img@@$CONFIG_OFFSET" "$LAB_DIR/broken.bundle" ::/lbd-update.bundle
	serial=$LAB_DIR/serial-6.log
	export LAB_NO_REBOOT=1
	lab_qemu_start "$img" "$serial"
	t0=$SECONDS
	l1=0 l2=0
	if wait_serial 'lbd-update: installed' "$BOOT_TIMEOUT"; then
		l1=$WS_LINE
		pass boot6.installed "from the config partition: $(grep -a -m1 'slot a now holds' "$serial" | tr -d '\r')"
	else
		fail boot6.installed "no 'lbd-update: installed' line; $(grep -a 'lbd-update' "$serial" | tail -n 3 | tr -d '\r')"
	fi
	if wait_serial 'lbd-boot-check: slot a .*FAILED' $((BOOT_TIMEOUT + 120)) "$l1"; then
		l2=$WS_LINE
		pass boot6.trial_failed "$(sed -n "${l2}p" "$serial" | tr -d '\r' | cut -c1-300)"
	else
		fail boot6.trial_failed "no 'lbd-boot-check: slot a ... FAILED' line"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
	fi
	if wait_serial 'lbd-slots: ROLLED BACK' "$BOOT_TIMEOUT" "$l2" && l3=$WS_LINE &&
		wait_serial 'lbd-status: READY' 60 "$l2"; then
		pass boot6.rolled_back "back on slot b by itself, $((SECONDS - t0)) s after power-on: $(sed -n "${l3}p" "$serial" | tr -d '\r')"
		grep -a -E '^lbd-slots: ' "$serial" | tail -n 5 | tr -d '\r' | sed 's/^/    | /'
	else
		fail boot6.rolled_back "no 'lbd-slots: ROLLED BACK' with READY after the failed trial"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
	fi
	if wait_vip "http://$LAB_VIP/" 30 && until_only "http://$LAB_VIP/" "backend-1=0 backend-2=10 fail=0" 20; then
		pass boot6.serves "slot b serves config B after the rollback"
	else
		fail boot6.serves "port 80 after the rollback: $(tally "http://$LAB_VIP/" 10)"
	fi
	lab_qemu_stop 90
	unset LAB_NO_REBOOT
	if ! mdir -b -i "$img@@$CONFIG_OFFSET" ::/ | grep -q -i 'lbd-update.bundle'; then
		pass boot6.bundle_removed "lbd-update.bundle is gone from the config partition"
	else
		fail boot6.bundle_removed "config partition: $(mdir -b -i "$img@@$CONFIG_OFFSET" ::/ | tr '\n' ' ')"
	fi
else
	fail boot6.installed "no broken bundle"
fi

fi  # boot 6

if want 7; then
### boot 7: one node of an HA pair whose peer never answers ([ha]), and
### `lbd edit` on the appliance itself (the real read-only /config remount)
cfg_ha=$LAB_DIR/ha.toml
sed 's/^\[appliance\]$/[appliance]\nconsole_login = true/' "$cfg_a" >"$cfg_ha"
cat >>"$cfg_ha" <<TOML

[ha]
mode = "vrrp"
interface = "wan"
router_id = 51
priority = 150
peer = "198.51.100.5"
advert_interval = "200ms"
lan_interface = "lan"
lan_address = "192.0.2.3/24"
sync_interface = "lan"
sync_peer = "192.0.2.6"
TOML
put_config "$cfg_ha"
if LAB_SERIAL_IN=1 boot 7; then
	t0=$SECONDS role=""
	while (( SECONDS - t0 < 60 )); do
		role=$(status_json | json_py 'd["ha"]["role"]')
		[ "$role" = MASTER ] && break
		sleep 1
	done
	if [ "$role" = MASTER ]; then
		pass boot7.ha_master "alone, the node became MASTER after $((SECONDS - t0)) s (keepalived and conntrackd from the image, as lbd's children)"
	else
		fail boot7.ha_master "role '${role:-none}' after 60 s; ha: $(status_json | json_py 'd.get("ha")')"
		grep -a -i 'keepalived\|conntrackd\|lbd:.*ha' "$serial" | tail -n 8 | tr -d '\r' | sed 's/^/    | /'
	fi
	if wait_vip "http://$LAB_VIP/" 45; then
		t=$(tally "http://$LAB_VIP/" 20)
		case $t in
		*"fail=0"*) case $t in *"backend-1=0 "*|*"backend-2=0 "*) fail boot7.ha_serves "20 requests: $t" ;;
			*) pass boot7.ha_serves "the VIP (added by keepalived) serves: $t" ;; esac ;;
		*) fail boot7.ha_serves "20 requests: $t" ;;
		esac
	else
		fail boot7.ha_serves "VIP $LAB_VIP:80 did not answer within 45 s"
	fi
	# /metrics asks conntrackd for its counters (bounded to 2 s by lbd):
	# a generous timeout, and a few tries on a slow TCG guest.
	t0=$SECONDS metrics=""
	while (( SECONDS - t0 < 30 )); do
		metrics=$(in_bk curl -s --max-time 10 http://192.0.2.1:9100/metrics)
		grep -q '^lbd_ha_role{role="MASTER"} 1' <<<"$metrics" && break
		sleep 1
	done
	if grep -q '^lbd_ha_role{role="MASTER"} 1' <<<"$metrics"; then
		pass boot7.ha_metrics '/metrics: lbd_ha_role{role="MASTER"} 1'
	else
		fail boot7.ha_metrics "no lbd_ha_role{role=\"MASTER\"} 1 in /metrics after 30 s; its lbd_ha lines: $(grep '^lbd_ha' <<<"$metrics" | tr '\n' ' ')"
	fi

	# lbd edit, with an editor that moves web's first backend to a port
	# nothing listens on: validated, written to the read-only partition
	# (remounted read-write only for the write), diffed and reloaded.
	shell=""
	for i in $(seq 30); do
		shell=$(guest "esh$i" '$((6*7))' 3) && break
	done
	if [ "$shell" != 42 ]; then
		fail boot7.edit "no root shell on the serial console (console_login = true)"
	else
		lab_serial_send "EDITOR='sed -i s/192.0.2.11:8080/192.0.2.11:8089/' lbd edit >/tmp/edit.out 2>&1; echo edit-rc=\$?"
		t0=$SECONDS
		until grep -a -q 'edit-rc=[0-9]' "$serial" || (( SECONDS - t0 > 60 )); do sleep 1; done
		erc=$(grep -a -o 'edit-rc=[0-9][0-9]*' "$serial" | tail -n 1)
		onfile=$(guest edfile '$(grep -c 192.0.2.11:8089 /config/lb.toml)')
		ro=$(guest edro '$(findmnt -n -o OPTIONS /config | cut -d, -f1)')
		if [ "$erc" = edit-rc=0 ] && [ "$onfile" = 1 ] && [ "$ro" = ro ] &&
			until_only "http://$LAB_VIP/" "backend-1=0 backend-2=10 fail=0" 30; then
			pass boot7.edit "lbd edit wrote /config/lb.toml (mounted $ro again), reloaded: port 80 -> backend-2 only"
		else
			fail boot7.edit "$erc, edited line on /config: ${onfile:-?}, /config mount: ${ro:-?}, port 80: $(tally "http://$LAB_VIP/" 10)"
			lab_serial_send "cat /tmp/edit.out"
			sleep 2
			tail -n 15 "$serial" | tr -d '\r' | sed 's/^/    | /'
		fi
	fi
else
	fail boot7.ha_master "no boot"
	fail boot7.ha_serves "no boot"
	fail boot7.ha_metrics "no boot"
	fail boot7.edit "no boot"
fi
lab_qemu_stop 90
fi  # boot 7

### Legacy BIOS (boots 8 and 9): SeaBIOS, syslinux on the same disk
# until_served URL SECONDS: until 10 requests in a row all get an answer
# (right after READY a health check may still be rising on a slow host);
# sets SERVED to the last tally.
until_served() {
	local t0=$SECONDS
	while (( SECONDS - t0 < $2 )); do
		SERVED=$(tally "$1" 10)
		[[ $SERVED == *"fail=0" ]] && return 0
		sleep 1
	done
	return 1
}
bimg=$LAB_DIR/bios.img
if want 8; then
### boot 8: a fresh copy of the image under SeaBIOS, then lbd update there
cp --sparse=always "$img_src" "$bimg"
cfg_bios=$LAB_DIR/bios.toml
sed 's/^\[appliance\]$/[appliance]\nconsole_login = true/' "$cfg_a" >"$cfg_bios"
mcopy -o -i "$bimg@@$CONFIG_OFFSET" "$cfg_bios" ::/lb.toml
img_uefi=$img img=$bimg
export LAB_FIRMWARE=bios LAB_SERIAL_IN=1 LAB_NO_REBOOT=1 QEMU_EXTRA="-drive if=none,id=bundle,format=raw,readonly=on,file=$LAB_DIR/new.bundle -device virtio-blk-pci,drive=bundle,serial=lbdbundle"
if [ -f "$LAB_DIR/new.bundle" ] && boot 8; then
	shell=""
	for i in $(seq 30); do shell=$(guest "b$i" '$((6*7))' 3) && break; done
	fw=$(guest fw0 '$(test -d /sys/firmware/efi && echo uefi || echo bios) $(grep -o "BOOT_IMAGE=[^ ]*" /proc/cmdline) $(grep -o "root=[^ ]*" /proc/cmdline)' 30)
	if [ "$fw" = "bios BOOT_IMAGE=/syslinux/lbd-a.linux root=PARTLABEL=LBROOT_A" ]; then
		pass boot8.bios "legacy BIOS boot through syslinux: $fw"
	else
		fail boot8.bios "shell '$shell'; firmware and command line: '$fw'"
	fi
	if wait_vip "http://$LAB_VIP/" 45; then
		t=$(tally "http://$LAB_VIP/" 20)
		case $t in
		*"backend-1=0 "*|*"backend-2=0 "*) fail boot8.serves "20 requests: $t" ;;
		*) pass boot8.serves "under SeaBIOS, 20 requests: $t" ;;
		esac
	else
		fail boot8.serves "VIP $LAB_VIP:80 did not answer within 45 s"
	fi
	lab_serial_send "lbd update /dev/disk/by-id/virtio-lbdbundle; echo @bupd=\$?@"
	l_upd=0
	wait_serial '@bupd=[0-9]+@' 240 && l_upd=$WS_LINE
	upd=$(grep -a -o '@bupd=[0-9]*@' "$serial" | tail -n1)
	if [ "$upd" = "@bupd=0@" ] && grep -a -q "slot b now holds $IMAGE_VERSION.1" "$serial" &&
		grep -a -q 'legacy BIOS: syslinux boots slot b next' "$serial"; then
		pass boot8.update "$(grep -a -m1 'slot b now holds' "$serial" | tr -d '\r'); $(grep -a -m1 'legacy BIOS: syslinux boots' "$serial" | tr -d '\r')"
	else
		fail boot8.update "lbd update exit '$upd'"
		grep -a -E 'lbd update|bundle|slot|legacy BIOS' "$serial" | tail -n 8 | tr -d '\r' | sed 's/^/    | /'
	fi
	lab_serial_send "reboot"
	if wait_serial 'lbd-status: READY' "$BOOT_TIMEOUT" "$l_upd"; then
		for i in $(seq 30); do guest "bv$i" '$((6*7))' 3 >/dev/null && break; done
		ver=$(guest bver '$(test -d /sys/firmware/efi && echo uefi || echo bios) $(. /usr/lib/os-release; echo $IMAGE_VERSION) $(grep -o "BOOT_IMAGE=[^ ]*" /proc/cmdline) $(grep -o "root=[^ ]*" /proc/cmdline)' 30)
		want_ver="bios $IMAGE_VERSION.1 BOOT_IMAGE=/syslinux/lbd-b.linux root=PARTLABEL=LBROOT_B"
		if [ "$ver" = "$want_ver" ]; then
			pass boot8.new_version "after the reboot: $ver"
		else
			fail boot8.new_version "after the reboot: '$ver', want '$want_ver'"
		fi
		if tail -n +"$l_upd" "$serial" | grep -a -q 'lbd-boot-sync: legacy BIOS trial boot of slot b: one try used (lbd-b+1.efi -> lbd-b+0-1.efi)'; then
			pass boot8.counted "$(tail -n +"$l_upd" "$serial" | grep -a -m1 'lbd-boot-sync: legacy BIOS trial' | tr -d '\r')"
		else
			fail boot8.counted "no lbd-boot-sync line counting slot b's try: $(tail -n +"$l_upd" "$serial" | grep -a 'lbd-boot-sync' | tr -d '\r' | tr '\n' ' ')"
		fi
		good=""
		for i in $(seq 20); do
			good=$(guest "bg$i" '$(ls /efi/EFI/Linux | tr "\n" " ")$(grep "^DEFAULT" /efi/syslinux/syslinux.cfg)' 5) &&
				[ "$good" = "lbd-a.efi lbd-b.efi DEFAULT lbd-b" ] && break
			sleep 3
		done
		if [ "$good" = "lbd-a.efi lbd-b.efi DEFAULT lbd-b" ] &&
			grep -a -q 'lbd-boot-check: legacy BIOS: entry renamed to lbd-b.efi (good); syslinux boots slot b next' "$serial"; then
			pass boot8.blessed "lbd READY: the boot check renamed lbd-b+0-1.efi to lbd-b.efi, syslinux.cfg: DEFAULT lbd-b"
		else
			fail boot8.blessed "ESP: '$good'; boot check: $(tail -n +"$l_upd" "$serial" | grep -a 'lbd-boot-check' | tr -d '\r' | tr '\n' ' ')"
		fi
		if wait_vip "http://$LAB_VIP/" 30 && until_served "http://$LAB_VIP/" 30; then
			pass boot8.serves_b "slot b serves config A: $SERVED"
		else
			fail boot8.serves_b "port 80 on slot b: ${SERVED:-no answer}"
		fi
	else
		fail boot8.new_version "no READY after the reboot into slot b"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
		fail boot8.counted "no boot"
		fail boot8.blessed "no boot"
		fail boot8.serves_b "no boot"
	fi
else
	fail boot8.ready "no boot or no bundle"
fi
lab_qemu_stop 90
unset LAB_SERIAL_IN QEMU_EXTRA LAB_NO_REBOOT
img=$img_uefi
fi  # boot 8

if want 9; then
### boot 9: under SeaBIOS, a broken bundle from the config partition rolls back
# What boot 6 does under UEFI, on what boot 8 left (slot b good, $IMAGE_VERSION.1).
if [ -f "$LAB_DIR/broken.bundle" ] && [ -f "$bimg" ]; then
	img_uefi=$img img=$bimg
	export LAB_FIRMWARE=bios LAB_NO_REBOOT=1
	mcopy -o -i "$img@@$CONFIG_OFFSET" "$LAB_DIR/broken.bundle" ::/lbd-update.bundle
	serial=$LAB_DIR/serial-9.log
	lab_qemu_start "$img" "$serial"
	t0=$SECONDS
	l1=0 l2=0
	if wait_serial 'lbd-update: installed' "$BOOT_TIMEOUT"; then
		l1=$WS_LINE
		pass boot9.installed "$(grep -a -m1 'slot a now holds' "$serial" | tr -d '\r'); $(grep -a -m1 'legacy BIOS: syslinux boots' "$serial" | tr -d '\r')"
	else
		fail boot9.installed "no 'lbd-update: installed' line; $(grep -a 'lbd-update' "$serial" | tail -n 3 | tr -d '\r')"
	fi
	if wait_serial 'lbd-boot-check: slot a .*FAILED' $((BOOT_TIMEOUT + 120)) "$l1"; then
		l2=$WS_LINE
		if tail -n +"$l1" "$serial" | grep -a -q 'lbd-boot-sync: legacy BIOS trial boot of slot a: one try used' &&
			wait_serial 'lbd-boot-check: marked bad .*syslinux falls back to slot b' 30 "$l2"; then
			pass boot9.trial_failed "$(sed -n "${l2}p" "$serial" | tr -d '\r' | cut -c1-200); $(sed -n "${WS_LINE}p" "$serial" | tr -d '\r')"
		else
			fail boot9.trial_failed "no count of slot a's try or no 'marked bad ... syslinux falls back to slot b': $(tail -n +"$l1" "$serial" | grep -a -E 'lbd-boot-(sync|check)' | tr -d '\r' | tr '\n' ' ')"
		fi
	else
		fail boot9.trial_failed "no 'lbd-boot-check: slot a ... FAILED' line"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
	fi
	if wait_serial 'lbd-slots: ROLLED BACK' "$BOOT_TIMEOUT" "$l2" && l3=$WS_LINE &&
		wait_serial 'lbd-status: READY' 60 "$l2"; then
		pass boot9.rolled_back "back on slot b by itself under BIOS, $((SECONDS - t0)) s after power-on: $(sed -n "${l3}p" "$serial" | tr -d '\r')"
		grep -a -E '^lbd-slots: ' "$serial" | tail -n 6 | tr -d '\r' | sed 's/^/    | /'
	else
		fail boot9.rolled_back "no 'lbd-slots: ROLLED BACK' with READY after the failed trial"
		tail -n 25 "$serial" | tr -d '\r' | sed 's/^/    | /'
	fi
	if wait_vip "http://$LAB_VIP/" 30 && until_served "http://$LAB_VIP/" 30; then
		pass boot9.serves "slot b serves after the rollback: $SERVED"
	else
		fail boot9.serves "port 80 after the rollback: ${SERVED:-no answer}"
	fi
	lab_qemu_stop 90
	unset LAB_NO_REBOOT LAB_FIRMWARE
	img=$img_uefi
else
	fail boot9.installed "no broken bundle or no disk from boot 8"
fi
fi  # boot 9
unset LAB_FIRMWARE

npass=0 nfail=0
for r in "${results[@]}"; do case $r in PASS*) npass=$((npass + 1)) ;; FAIL*) nfail=$((nfail + 1)) ;; esac; done
echo "image-test: $npass passed, $nfail failed"
[ "$nfail" = 0 ] || exit 1
exit 0
