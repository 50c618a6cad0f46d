# lvrepo-boot.sh: mount the root filesystem from an lvrepo repository in an
# initrd (sourced by the initramfs-tools boot script and the dracut module;
# POSIX sh, busybox and klibc compatible). See docs/boot.md.
#
# Kernel command line:
#   root=lvrepo:IMAGE[:VERSION]  serve IMAGE with the overlay partition's root
#                                as its overlay (made on first boot if blank)
#   root=lvrepo:guest=NAME       serve guest NAME: the overlay partition holds
#                                the guest's directory (made on the host by
#                                `lvrepo guest create NAME --overlay DIR`)
#   lvrepo.repo=DEV lvrepo.overlay=DEV  device path, LABEL=... or UUID=...
#   lvrepo.timeout=SECONDS       how long to wait for the disks (default 30)
#
# Every failure prints one line "lvrepo: ..." and, unless rd.shell or break
# is on the command line (then the caller drops to its shell), powers off.

LVREPO_MNT=/lvrepo

# The value of kernel parameter $1 (the last one given), empty if absent.
lvrepo_arg() {
	_v=
	for _x in $(cat /proc/cmdline); do
		case "$_x" in "$1="*) _v=${_x#"$1="} ;; esac
	done
	printf '%s' "$_v"
}

# Whether the command line asks for a shell on failure.
lvrepo_wants_shell() {
	for _x in $(cat /proc/cmdline); do
		case "$_x" in rd.shell | rd.shell=1 | break | break=*) return 0 ;; esac
	done
	return 1
}

# Print the one failure line; power off unless a shell is wanted (then
# return 1 so that the caller follows its distribution's convention).
lvrepo_fail() {
	echo "lvrepo: $*" >/dev/console 2>&1 || echo "lvrepo: $*" >&2
	lvrepo_wants_shell && return 1
	sync
	poweroff -f
	# Still here (no power-off available): stop without a panic loop.
	while :; do sleep 3600; done
}

# The block device for spec $1 (path, LABEL=, UUID=), waiting up to $2 s.
lvrepo_device() {
	_n=0
	while :; do
		case "$1" in
		LABEL=*) _d=/dev/disk/by-label/${1#LABEL=} ;;
		UUID=*) _d=/dev/disk/by-uuid/${1#UUID=} ;;
		*) _d=$1 ;;
		esac
		# Without udev's links, ask blkid.
		if [ ! -b "$_d" ] && command -v blkid >/dev/null 2>&1; then
			case "$1" in LABEL=* | UUID=*) _d=$(blkid -l -o device -t "$1" 2>/dev/null) ;; esac
		fi
		if [ -n "$_d" ] && [ -b "$_d" ]; then
			printf '%s' "$_d"
			return 0
		fi
		[ "$_n" -ge $(($2 * 5)) ] && return 1
		_n=$((_n + 1))
		sleep 0.2
	done
}

# Mount the root filesystem at $1. Returns non-zero only after lvrepo_fail
# asked for a shell.
lvrepo_mount_root() {
	_name=
	_root=$(lvrepo_arg root)
	_spec=${_root#lvrepo:}
	_repo=$(lvrepo_arg lvrepo.repo)
	_ov=$(lvrepo_arg lvrepo.overlay)
	_t=$(lvrepo_arg lvrepo.timeout)
	case "$_t" in '' | *[!0-9]*) _t=30 ;; esac
	[ -n "$_spec" ] || { lvrepo_fail "root=lvrepo: names no image (root=lvrepo:IMAGE[:VERSION] or root=lvrepo:guest=NAME)"; return 1; }
	[ -n "$_repo" ] || { lvrepo_fail "no lvrepo.repo= on the kernel command line (the repository disk)"; return 1; }
	[ -n "$_ov" ] || { lvrepo_fail "no lvrepo.overlay= on the kernel command line (the overlay partition)"; return 1; }
	modprobe -q fuse 2>/dev/null
	modprobe -q ext4 2>/dev/null
	_rdev=$(lvrepo_device "$_repo" "$_t") || { lvrepo_fail "repository disk $_repo not found (waited ${_t} s)"; return 1; }
	_odev=$(lvrepo_device "$_ov" "$_t") || { lvrepo_fail "overlay partition $_ov not found (waited ${_t} s)"; return 1; }
	mkdir -p "$LVREPO_MNT/repo"
	# Shared and read-only: no journal replay (noload), never a write.
	mount -t ext4 -o ro,noload "$_rdev" "$LVREPO_MNT/repo" 2>/dev/null ||
		{ lvrepo_fail "cannot mount repository disk $_repo ($_rdev) read-only as ext4"; return 1; }
	case "$_spec" in
	guest=*)
		_name=${_spec#guest=}
		_rec="$LVREPO_MNT/repo/guests/$_name.json"
		[ -f "$_rec" ] || { lvrepo_fail "no guest $_name in the repository on $_repo"; return 1; }
		# The guest's directory is a top-level directory of the overlay
		# partition: the partition is mounted at the parent of the one the
		# host recorded, so the host's paths hold here too.
		_gdir=$(sed -n 's/^ *"dir": *"\(.*\)",\{0,1\}$/\1/p' "$_rec")
		_dir=${_gdir%/*}
		case "$_gdir" in /?*/?*) ;; *) lvrepo_fail "guest record $_rec names no directory below a mount point (got '$_gdir')"; return 1 ;; esac
		set -- "$1" --guest "$_name"
		;;
	*)
		_dir=$LVREPO_MNT/overlay
		set -- "$1" "$_spec" --overlay "$_dir"
		;;
	esac
	mkdir -p "$_dir"
	mount -t ext4 -o rw "$_odev" "$_dir" 2>/dev/null ||
		{ lvrepo_fail "cannot mount overlay partition $_ov ($_odev) as ext4 (damaged? check it with e2fsck on the host)"; return 1; }
	if [ -n "$_name" ] && [ ! -f "$_gdir/STATE" ]; then
		umount "$_dir"
		lvrepo_fail "overlay partition $_ov holds no guest $_name (on the host: mount it at $_dir, then lvrepo guest create $_name --overlay $_gdir)"
		return 1
	fi
	_mp=$1
	shift
	# argv[0] '@': a root storage daemon (systemd spares it at shutdown);
	# the daemon keeps it and runs on after switch_root, in the initrd's root.
	if ! _err=$(cd / && PATH="/bin:/sbin:$PATH" @lvrepo --repo "$LVREPO_MNT/repo" mount "$@" "$_mp" 2>&1 </dev/null); then
		umount "$_dir" 2>/dev/null
		lvrepo_fail "cannot serve root=$_root: $(printf '%s' "$_err" | tr '\n' ' ' | sed 's/^ *//; s/^Error: //; s/ *$//')"
		return 1
	fi
	return 0
}
