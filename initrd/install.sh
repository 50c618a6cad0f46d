#!/bin/bash
# Install lvrepo's initrd integration on this machine (docs/boot.md):
#   bash initrd/install.sh [--all]
# initramfs-tools hook + boot script when initramfs-tools is present, the
# dracut module when dracut is; --all installs both (packagers). DESTDIR
# (packagers: a staging root) and PREFIX (default /usr) are honoured.
# Then `update-initramfs -u` / `mkinitramfs` / `dracut -f` build initrds that
# hold lvrepo: it is taken from $LVREPO_BIN, else from PATH, at build time.
set -euo pipefail
src=$(cd "$(dirname "$0")" && pwd)
all=0
[ "${1:-}" = --all ] && all=1
root=${DESTDIR:-}
prefix=${PREFIX:-/usr}
inst() { install -D -m "$1" "$2" "$root$3"; echo "installed $root$3"; }

inst 0644 "$src/lvrepo-boot.sh" "$prefix/share/lvrepo/lvrepo-boot.sh"
inst 0755 "$src/lvrepo-shutdown" "$prefix/share/lvrepo/lvrepo-shutdown"
inst 0644 "$src/lvrepo-shutdown.service" "$prefix/share/lvrepo/lvrepo-shutdown.service"
if [ "$all" = 1 ] || [ -d /usr/share/initramfs-tools ]; then
	inst 0755 "$src/initramfs-tools/hooks/lvrepo" "$prefix/share/initramfs-tools/hooks/lvrepo"
	inst 0644 "$src/initramfs-tools/scripts/lvrepo" "$prefix/share/initramfs-tools/scripts/lvrepo"
fi
if [ "$all" = 1 ] || [ -d /usr/lib/dracut ]; then
	for f in module-setup.sh lvrepo-parse-root.sh lvrepo-mount-root.sh lvrepo-shutdown-hook.sh; do
		inst 0755 "$src/dracut/90lvrepo/$f" "$prefix/lib/dracut/modules.d/90lvrepo/$f"
	done
fi
