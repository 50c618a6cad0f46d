#!/bin/bash
# Boot time of a systemd guest with its root on lvrepo beside the same tree
# on a plain ext4 root disk (docs/boot.md, issue 27 tier 2). Not a test.
#
#   bash benches/boot-compare.sh [ROUNDS]      (default 3; run as root)
#
# The tree is the boot test's tier 2: the cached bookworm minbase + systemd
# tree (tests/fetch-debootstrap.sh --systemd), with lvrepo and a unit that,
# at multi-user, prints the guest's uptime, checkpoints (on lvrepo) and
# powers off. Both boots use the same kernel, initrd (mkinitramfs after
# initrd/install.sh), QEMU (TCG, 1 CPU, 1 GiB) and a fresh copy of their
# disks each round; they alternate. Printed per boot: the guest's uptime at
# multi-user (kernel start to the unit; no firmware) and the wall time from
# QEMU's start to that line; then medians and ratios.
# LVREPO_BIN: the binary (default target/release/lvrepo).
# BOOT_ONLY=lvrepo|ext4 KEEP=1: one boot, console on stdout, work dir kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
BIN=$(realpath "${LVREPO_BIN:-target/release/lvrepo}")
CACHE=${LVREPO_TEST_CACHE:-/var/cache/lvrepo-tests}
sh tests/fetch-debootstrap.sh --systemd >/dev/null
W=$(mktemp -d /var/tmp/lvrepo-bootcmp.XXXXXX)
cleanup() {
	mountpoint -q "$W/part" && umount "$W/part"
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
export LVREPO_REPO=$W/repo

# The tree (as tests/tests/boot/tier2.rs builds it).
T=$W/tree
cp -a "$CACHE/bookworm-systemd" "$T"
strip -o "$T/usr/bin/lvrepo" "$BIN"
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
	[ -e "$T$lib" ] || { mkdir -p "$(dirname "$T$lib")"; cp -L "$lib" "$T$lib"; }
done
install -D -m 0755 initrd/lvrepo-shutdown "$T/usr/lib/systemd/system-shutdown/lvrepo-shutdown"
install -D -m 0755 tests/tests/boot/guest/lvrepo-tier2 "$T/usr/local/sbin/lvrepo-tier2"
install -m 0644 tests/tests/boot/guest/lvrepo-tier2.service "$T/etc/systemd/system/"
install -m 0644 initrd/lvrepo-shutdown.service "$T/usr/lib/systemd/system/"
mkdir -p "$T/etc/systemd/system/multi-user.target.wants"
ln -s /etc/systemd/system/lvrepo-tier2.service "$T/etc/systemd/system/multi-user.target.wants/"
mkdir -p "$T/etc/systemd/system/final.target.wants"
ln -s /usr/lib/systemd/system/lvrepo-shutdown.service "$T/etc/systemd/system/final.target.wants/"

# The lvrepo disks: repository, and the guest's overlay partition.
"$BIN" init -q
"$BIN" import -q "$T" --image deb:1
mkfs.ext4 -q -F -L lvguest "$W/guest.ext4" 256M
mkdir -p "$W/part"
mount -o loop "$W/guest.ext4" "$W/part"
"$BIN" guest create vm --image deb:1 --overlay "$W/part/vm" --set hostname=tier2 >/dev/null
umount "$W/part"
mkfs.ext4 -q -F -L lvrepo -d "$W/repo" "$W/repo.ext4" 512M
# The plain root disk: the same tree.
mkfs.ext4 -q -F -L plainroot -d "$T" "$W/root.ext4" 1G

bash initrd/install.sh >/dev/null
KVER=$(basename "$(ls /boot/vmlinuz-* | sort | tail -1)" | sed 's/^vmlinuz-//')
LVREPO_BIN=$BIN mkinitramfs -o "$W/initrd.img" "$KVER"

# boot KIND: one boot from fresh disks; prints "KIND UPTIME WALL".
boot() {
	local kind=$1 append drives
	case $kind in
	lvrepo)
		cp --sparse=always "$W/guest.ext4" "$W/run.ext4"
		append="root=lvrepo:guest=vm lvrepo.repo=LABEL=lvrepo lvrepo.overlay=LABEL=lvguest"
		drives=(-drive "file=$W/repo.ext4,format=raw,if=virtio,readonly=on" -drive "file=$W/run.ext4,format=raw,if=virtio")
		;;
	ext4)
		cp --sparse=always "$W/root.ext4" "$W/run.ext4"
		append="root=LABEL=plainroot rw"
		drives=(-drive "file=$W/run.ext4,format=raw,if=virtio")
		;;
	esac
	local t0 t1 q up n=0
	# The last round's console holds the line waited for: gone first.
	rm -f "$W/$kind.console"
	t0=$(date +%s.%N)
	qemu-system-x86_64 -machine q35,accel=tcg -cpu max -m 1024 -nographic -no-reboot -nodefaults -serial stdio \
		-kernel "/boot/vmlinuz-$KVER" -initrd "$W/initrd.img" -append "console=ttyS0 panic=-1 ${BOOT_APPEND:-quiet} $append" \
		"${drives[@]}" </dev/null >"$W/$kind.console" 2>&1 &
	q=$!
	# Boot time: until the unit reports multi-user. Then up to 120 s for
	# the power-off (a hung shutdown is reported, not waited for).
	while ! grep -q 'LVREPO-T2-UPTIME' "$W/$kind.console" 2>/dev/null; do
		kill -0 $q 2>/dev/null || { echo "boot $kind ended before multi-user:" >&2; tail -20 "$W/$kind.console" >&2; exit 1; }
		sleep 0.2
	done
	t1=$(date +%s.%N)
	while kill -0 $q 2>/dev/null && [ $n -lt 600 ]; do sleep 0.2; n=$((n + 1)); done
	kill $q 2>/dev/null && echo "boot $kind: no power-off within 120 s of multi-user" >&2
	wait $q || true
	[ -n "${BOOT_ONLY:-}" ] && cat "$W/$kind.console"
	up=$(sed -n 's/.*LVREPO-T2-UPTIME: \([0-9.]*\).*/\1/p' "$W/$kind.console")
	if [ "$kind" = lvrepo ] && ! grep -q 'lvrepo-shutdown: overlay clean' "$W/$kind.console"; then
		echo "boot lvrepo: the overlay was not reported clean at power-off" >&2
	fi
	printf '%s %s %.1f\n' "$kind" "$up" "$(echo "$t1 - $t0" | bc)"
}

if [ -n "${BOOT_ONLY:-}" ]; then
	boot "$BOOT_ONLY"
	echo "work dir: $W"
	exit 0
fi
: >"$W/results"
for i in $(seq "$ROUNDS"); do
	boot ext4 | tee -a "$W/results"
	boot lvrepo | tee -a "$W/results"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for col in 2 3; do
	e=$(awk -v c=$col '$1 == "ext4" {print $c}' "$W/results" | median)
	l=$(awk -v c=$col '$1 == "lvrepo" {print $c}' "$W/results" | median)
	name=$([ $col = 2 ] && echo "to multi-user (guest uptime)" || echo "QEMU start to multi-user")
	printf '%-30s ext4 %6.1f s  lvrepo %6.1f s  ratio %.2f\n' "$name" "$e" "$l" "$(echo "$l / $e" | bc -l)"
done
echo "rounds: $ROUNDS, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
