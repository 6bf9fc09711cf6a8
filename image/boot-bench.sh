#!/bin/bash
# boot-bench.sh IMG [N]: boots a copy of IMG N times (default 3) in the
# namespace lab with a static config and prints the seconds from QEMU's
# start to lbd's READY line on the serial console, and their median. With
# BENCH_REPORT=1 the config turns the serial root shell on and, after
# READY, the bench asks it for systemd-analyze's totals, the critical
# chain to lbd.service and the slowest units (printed here), then the
# output of the guest shell command BENCH_EXTRA if set. With
# BENCH_APPEND="..." the kernel next to IMG is booted directly with that
# command line. Serial logs go to BENCH_LOGS (out/boot-bench).
set -uo pipefail
img_src=${1:?usage: boot-bench.sh IMG [N]}
n=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lab.sh"
. "${img_src}.layout"
export MTOOLS_SKIP_CHECK=1
LOGS=${BENCH_LOGS:-$(dirname "$img_src")/boot-bench}
mkdir -p "$LOGS"
trap 'cp "$LAB_DIR"/serial-*.log "$LOGS"/ 2>/dev/null; lab_down' EXIT
trap 'exit 130' INT TERM
lab_up
img=$LAB_DIR/bench.img
export LAB_KERNEL=${LAB_KERNEL:-${img_src%.img}.vmlinuz} LAB_INITRD=${LAB_INITRD:-${img_src%.img}.initrd}
cp --sparse=always "$img_src" "$img"
login=false
[ "${BENCH_REPORT:-}" = 1 ] && login=true && export LAB_SERIAL_IN=1
cat >"$LAB_DIR/lb.toml" <<TOML
[appliance]
status_listen = "192.0.2.1:9100"
console_login = $login
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
  [[service.backend]]
  address = "192.0.2.11:8080"
TOML
mcopy -o -i "$img@@$CONFIG_OFFSET" "$LAB_DIR/lb.toml" ::/lb.toml
times=()
for ((i = 1; i <= n; i++)); do
	serial=$LAB_DIR/serial-bench-$i.log
	t0=$(date +%s.%N)
	lab_qemu_start "$img" "$serial" "${BENCH_APPEND:-}"
	# BENCH_TS=1: every serial line with the seconds since QEMU's start
	# when it arrived (where the firmware and initrd time goes).
	ts_pid=""
	if [ "${BENCH_TS:-}" = 1 ]; then
		python3 -u - "$serial" "$t0" >"$LOGS/serial-bench-$i.ts" <<'PY' &
import sys, time
path, t0 = sys.argv[1], float(sys.argv[2])
buf, pos = b"", 0
while True:
    with open(path, "rb") as f:
        f.seek(pos)
        chunk = f.read()
    pos += len(chunk)
    buf += chunk
    *lines, buf = buf.split(b"\n")
    for line in lines:
        text = line.decode("utf-8", "replace").strip()
        if text:
            print("%7.2f %s" % (time.time() - t0, text))
    time.sleep(0.02)
PY
		ts_pid=$!
	fi
	t=""
	while kill -0 "$LAB_QEMU_PID" 2>/dev/null; do
		if grep -a -q 'lbd-status: READY' "$serial"; then
			t=$(echo "$(date +%s.%N) - $t0" | bc)
			break
		fi
		(( $(echo "$(date +%s.%N) - $t0 > 300" | bc) )) && break
		sleep 0.2
	done
	echo "boot $i: READY after ${t:-(none)} s  (load $(cut -d' ' -f1 /proc/loadavg))"
	[ -n "$t" ] && times+=("$t")
	if [ "${BENCH_REPORT:-}" = 1 ] && [ -n "$t" ]; then
		# The shell comes up after READY; is-system-running --wait until
		# every start job is done (systemd-analyze needs a finished boot).
		for ((w = 0; w < 120; w++)); do
			grep -a -q '@sh=42@' "$serial" && break
			lab_serial_send 'echo "@sh=$((6*7))@"'
			sleep 3
		done
		lab_serial_send 'export SYSTEMD_PAGER=cat; systemctl is-system-running --wait; echo "@rep=begin@"; systemd-analyze time; systemd-analyze critical-chain lbd.service; systemd-analyze blame --no-pager | head -n 25; '"${BENCH_EXTRA:-true}"'; echo "@rep=end@"'
		for ((w = 0; w < 300; w++)); do grep -a -q '^@rep=end@' "$serial" && break; sleep 1; done
		sed -n '/^@rep=begin@/,/^@rep=end@/p' "$serial" | tr -d '\r' | sed 's/\x1b\[[0-9;]*m//g'
	fi
	lab_qemu_stop 60
	[ -n "$ts_pid" ] && kill "$ts_pid" 2>/dev/null
done
if [ ${#times[@]} -gt 0 ]; then
	printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "median of %d boots: %.1f s (min %.1f, max %.1f)\n", NR, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[1], a[NR] }'
fi
