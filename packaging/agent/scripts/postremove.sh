#!/bin/sh
# aftercare-agent: after removal. `dpkg -r` keeps the state (enrolment, spool,
# journals) so a reinstall carries on; `dpkg -P` deletes it. rpm has no purge:
# `rpm -e` keeps the state like `dpkg -r`. The system user stays (Debian policy:
# files it owned may remain elsewhere).
set -e
case "$1" in
    purge)
        rm -rf /var/lib/aftercare-agent
        rmdir /etc/aftercare 2>/dev/null || true
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
exit 0
