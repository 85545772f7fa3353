#!/bin/sh
# aftercare-agent: before removal (deb: remove; rpm: $1 = 0 on erase, 1 on upgrade).
set -e
case "$1" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl disable --now aftercare-agent.service || true
        fi
        ;;
esac
exit 0
