#!/bin/bash
# dracut module: lvrepo as the root filesystem (root=lvrepo:..., docs/boot.md).
# The binary is $LVREPO_BIN, else lvrepo on PATH.

check() {
	[ -x "${LVREPO_BIN:-$(command -v lvrepo)}" ] || return 1
	# Included when asked for (--add lvrepo) or when this host boots so.
	return 255
}

depends() {
	echo fs-lib shutdown
}

installkernel() {
	instmods fuse ext4
}

install() {
	inst_binary "${LVREPO_BIN:-$(command -v lvrepo)}" /usr/bin/lvrepo
	# Started as @lvrepo: systemd's mark of a root storage daemon.
	ln_r /usr/bin/lvrepo /usr/bin/@lvrepo
	inst_simple /usr/share/lvrepo/lvrepo-boot.sh /lib/lvrepo-boot.sh
	inst_simple /usr/share/lvrepo/lvrepo-shutdown /usr/bin/lvrepo-shutdown
	inst_multiple cat sed tr grep head mount umount modprobe sleep sync poweroff
	inst_multiple -o blkid
	inst_hook cmdline 90 "$moddir/lvrepo-parse-root.sh"
	inst_hook mount 90 "$moddir/lvrepo-mount-root.sh"
	inst_hook shutdown 20 "$moddir/lvrepo-shutdown-hook.sh"
}
