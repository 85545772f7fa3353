#!/bin/sh
# aftercare-collector: after removal. `dpkg -r` keeps the data directory (CA, store,
# recordings: losing the CA means re-enrolling every agent); `dpkg -P` deletes it.
# rpm has no purge: `rpm -e` keeps it. The system user stays.
set -e
case "$1" in
    purge)
        rm -rf /var/lib/aftercare-collector
        rmdir /etc/aftercare 2>/dev/null || true
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
