#!/bin/sh
# dracut shutdown hook (back in the initramfs at power-off): the root's daemon
# syncs and freezes its overlay partition, so it is clean for the host.
command -v lvrepo-shutdown >/dev/null && lvrepo-shutdown
