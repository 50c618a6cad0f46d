#!/bin/sh
# dracut cmdline hook: root=lvrepo:... is ours (mounted by the mount hook).
[ -z "$root" ] && root=$(getarg root=)
case "$root" in
lvrepo:*)
	rootok=1
	fstype=lvrepo
	;;
esac
