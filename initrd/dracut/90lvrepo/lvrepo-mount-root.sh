#!/bin/sh
# dracut mount hook: serve root=lvrepo:... at $NEWROOT. A failure printed its
# line and powered off, or (rd.shell, break) dracut's emergency shell follows.
case "$root" in
lvrepo:*)
	. /lib/lvrepo-boot.sh
	lvrepo_mount_root "$NEWROOT" || die "lvrepo: the root filesystem is not mounted"
	;;
esac
