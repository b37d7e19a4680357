#!/usr/bin/env bash
# Boots the microVM image (out/vm, from `make vm-image`) under QEMU and
# serves it with bin/relay on $DIR/agent.sock, in the foreground. Ctrl-C or
# SIGTERM stops the relay, then the VM. If QEMU dies, the relay sees the
# guest's stream end and exits; this script says so.
#
#   QEMU_ACCEL   tcg or kvm; default kvm only where the CPU has VMX or SVM
#                and kvm_intel or kvm_amd is loaded (a PVM /dev/kvm runs
#                only PVM guests), else tcg
#   VM_MEM       guest memory (default 512M)
#   VM_CPUS      guest CPUs (default 1)
#   DIR          runtime directory, mode 0700 (default /tmp/agentrelay-vm)
#
# The QEMU command line is the one vmtest.Start builds: keep them alike.
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${IMG:-out/vm}
DIR=${DIR:-/tmp/agentrelay-vm}
RELAY=${RELAY:-./bin/relay}
for f in "$IMG/vmlinux" "$IMG/initramfs.cpio" "$RELAY"; do
	[ -e "$f" ] || { echo "run-vm: $f missing (make vm-image build)" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null ||
	{ echo "run-vm: qemu-system-x86_64 not found (apt-get install --no-install-recommends qemu-system-x86)" >&2; exit 1; }

accel=${QEMU_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if grep -qwE 'vmx|svm' /proc/cpuinfo && grep -qE '^kvm_(intel|amd) ' /proc/modules 2>/dev/null && [ -w /dev/kvm ]; then
		accel=kvm
	fi
fi
# Under TCG the microvm guest hangs after "Marking TSC unstable" unless the
# kernel is told the TSC's rate and trusts it.
khz=$(awk -F: '/^cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)

mkdir -p "$DIR"
chmod 700 "$DIR"
rm -f "$DIR/console.sock"
start=$(date +%s%N)
setsid qemu-system-x86_64 \
	-machine microvm,acpi=on -accel "$accel" -cpu max -m "${VM_MEM:-512M}" -smp "${VM_CPUS:-1}" \
	-nodefaults -no-user-config -nographic -no-reboot \
	-kernel "$IMG/vmlinux" -initrd "$IMG/initramfs.cpio" \
	-append "console=ttyS0 reboot=t panic=-1 quiet tsc_early_khz=$khz tsc=reliable" \
	-serial "file:$DIR/serial.log" \
	-device virtio-serial-device \
	-chardev "socket,id=agent,path=$DIR/console.sock,server=on,wait=off" \
	-device virtserialport,chardev=agent,name=agent \
	>"$DIR/qemu.log" 2>&1 &
qemu=$!
echo "$qemu" >"$DIR/qemu.pid"
for _ in $(seq 100); do [ -S "$DIR/console.sock" ] || ! kill -0 $qemu 2>/dev/null && break; sleep 0.05; done

"$RELAY" serve --socket "$DIR/agent.sock" --guest "unix:$DIR/console.sock" --exec-log "$DIR" 2> >(tee "$DIR/relay.log" >&2) &
relay=$!

stop() {
	trap - INT TERM
	kill -TERM $relay 2>/dev/null || true
	wait $relay 2>/dev/null || true
	kill -TERM $qemu 2>/dev/null || true
	wait $qemu 2>/dev/null || true
	rm -f "$DIR/qemu.pid" "$DIR/console.sock"
	exit 0
}
trap stop INT TERM

for _ in $(seq 1200); do
	grep -q 'guest ready' "$DIR/relay.log" 2>/dev/null && break
	kill -0 $relay 2>/dev/null && kill -0 $qemu 2>/dev/null || break
	sleep 0.05
done
if grep -q 'guest ready' "$DIR/relay.log" 2>/dev/null; then
	echo "run-vm: guest ready $(( ($(date +%s%N) - start) / 1000000 )) ms after QEMU started ($accel); try:" >&2
	echo "  $RELAY exec --socket $DIR/agent.sock -- uname -a" >&2
fi

set +e
wait -n $relay $qemu
if ! kill -0 $qemu 2>/dev/null; then
	wait $qemu 2>/dev/null; rc=$?
	why="status $rc"
	[ $rc -gt 128 ] && why="killed by signal $((rc - 128))"
	echo "run-vm: QEMU exited ($why) $(tail -c 300 "$DIR/qemu.log"); kernel log in $DIR/serial.log" >&2
	wait $relay; rrc=$?
	echo "run-vm: relay exited (status $rrc) after the guest's console closed" >&2
	rm -f "$DIR/qemu.pid" "$DIR/console.sock"
	exit 1
fi
wait $relay; rc=$?
echo "run-vm: relay exited (status $rc); stopping the VM" >&2
kill -TERM $qemu 2>/dev/null; wait $qemu 2>/dev/null
rm -f "$DIR/qemu.pid" "$DIR/console.sock"
exit $rc
