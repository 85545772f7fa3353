#!/bin/sh
# aftercare-collector: after install/upgrade (deb: configure; rpm: $1 >= 1).
set -e
if ! getent group aftercare-collector >/dev/null; then
    groupadd --system aftercare-collector
fi
if ! getent passwd aftercare-collector >/dev/null; then
    useradd --system --gid aftercare-collector --home-dir /var/lib/aftercare-collector \
        --no-create-home --shell /usr/sbin/nologin --comment "aftercare collector" \
        aftercare-collector
fi
# Data: the CA key, the store, recordings, the admin token; only the collector reads it.
install -d -m 0700 -o aftercare-collector -g aftercare-collector /var/lib/aftercare-collector
chown root:aftercare-collector /etc/aftercare/collector.env
chmod 0640 /etc/aftercare/collector.env
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl try-restart aftercare-collector.service || true
fi
exit 0
