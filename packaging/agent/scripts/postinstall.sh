#!/bin/sh
# aftercare-agent: after install/upgrade (deb: configure; rpm: $1 >= 1).
set -e
if ! getent group aftercare >/dev/null; then
    groupadd --system aftercare
fi
if ! getent passwd aftercare >/dev/null; then
    useradd --system --gid aftercare --home-dir /var/lib/aftercare-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "aftercare agent" aftercare
fi
# State: the agent's key, certificate, spool and journals; only the agent reads them.
install -d -m 0700 -o aftercare -g aftercare /var/lib/aftercare-agent
# The agent reads its config; only root may change it or the customer's policy
# (agent/trusted_file.py refuses files writable by group or others).
chown root:aftercare /etc/aftercare/agent.toml
chmod 0640 /etc/aftercare/agent.toml
chown root:root /etc/aftercare/policy.toml
chmod 0644 /etc/aftercare/policy.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    # an upgrade restarts a running agent; a first install waits for enrolment
    systemctl try-restart aftercare-agent.service || true
fi
exit 0
