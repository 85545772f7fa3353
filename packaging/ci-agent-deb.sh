#!/usr/bin/env bash
# CI check of the agent's .deb, run as root by .ci/run: install it with dpkg -i, enrol
# the installed agent (as its `aftercare` user) with a collector from the dev venv,
# start it the way its systemd unit does, wait until the collector shows it connected,
# then `dpkg -r` (state kept, conffiles kept) and `dpkg -P` (state removed). Prints
# the installed size. Leaves the machine as it found it; refuses to run over an
# existing aftercare-agent installation.
# Usage: packaging/ci-agent-deb.sh [PATH.deb]   (default: build it with make packages)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "error: run as root (it installs a package)" >&2; exit 2; }
if dpkg -s aftercare-agent >/dev/null 2>&1; then
    echo "error: aftercare-agent is already installed here; remove it first" >&2
    exit 2
fi
DEB=${1:-}
if [ -z "$DEB" ]; then
    packaging/build-agent.sh deb
    DEB=$(ls build/packages/aftercare-agent_*.deb)
fi
STATE=/var/lib/aftercare-agent
WORK=$(mktemp -d)
COLLECTOR_PID= AGENT_PID=
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$COLLECTOR_PID" ] && kill "$COLLECTOR_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if dpkg -s aftercare-agent >/dev/null 2>&1; then dpkg -P aftercare-agent >/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

step "install $DEB"
dpkg -i "$DEB"
getent passwd aftercare >/dev/null || fail "no aftercare system user"
[ "$(stat -c '%a %U' $STATE)" = "700 aftercare" ] || fail "state dir mode: $(stat -c '%a %U' $STATE)"
[ "$(stat -c '%a %U:%G' /etc/aftercare/agent.toml)" = "640 root:aftercare" ] || fail "agent.toml mode"
grep -qx /etc/aftercare/agent.toml /var/lib/dpkg/info/aftercare-agent.conffiles || fail "conffiles"
/usr/bin/aftercare-agent --version
echo "installed size: $(dpkg-query -W -f='${Installed-Size}' aftercare-agent) KiB" \
    "($(du -sh /opt/aftercare-agent | cut -f1) in /opt/aftercare-agent)"
for absent in grpc paramiko prometheus_client; do
    if /opt/aftercare-agent/venv/bin/python -c "import $absent" 2>/dev/null; then
        fail "the agent's venv has $absent"
    fi
done

step "start a collector (dev venv)"
read -r AGENT_PORT API_PORT METRICS_PORT SSH_PORT < <(.venv/bin/python -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
.venv/bin/aftercare-collector serve --data-dir "$WORK/collector" \
    --listen 127.0.0.1:"$AGENT_PORT" --api-listen 127.0.0.1:"$API_PORT" \
    --metrics-listen 127.0.0.1:"$METRICS_PORT" --ssh-listen 127.0.0.1:"$SSH_PORT" \
    >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
for _ in $(seq 60); do [ -f "$WORK/collector/endpoints.json" ] && break; sleep 0.5; done
[ -f "$WORK/collector/endpoints.json" ] || { cat "$WORK/collector.log"; fail "collector did not start"; }

step "enrol the installed agent as user aftercare"
JOIN=$(.venv/bin/aftercare-collector token create --data-dir "$WORK/collector" --customer ci --json)
field() { .venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['$1'])" <<<"$JOIN"; }
ENROLLED=$(runuser -u aftercare -- aftercare-agent enroll --state-dir "$STATE" --json \
    --collector "$(field collector)" --token "$(field token)" --ca-hash "$(field ca_hash)")
AGENT_ID=$(.venv/bin/python -c "import json,sys; print(json.load(sys.stdin)['agent_id'])" \
    <<<"$ENROLLED")
echo "enrolled as $AGENT_ID"

step "start it as its unit does"
if [ -d /run/systemd/system ]; then
    systemctl start aftercare-agent.service
else  # no systemd (containers): the unit's ExecStart, as its User
    EXEC=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/aftercare-agent.service)
    # shellcheck disable=SC2086
    runuser -u aftercare -- $EXEC >"$WORK/agent.log" 2>&1 &
    AGENT_PID=$!
fi
export AFTERCARE_COLLECTOR=127.0.0.1:$API_PORT AFTERCARE_CA_FILE=$WORK/collector/ca.pem
AFTERCARE_TOKEN=$(cat "$WORK/collector/admin-token")
export AFTERCARE_TOKEN
connected() {
    .venv/bin/aftercare agents --json | AGENT_ID=$AGENT_ID .venv/bin/python -c '
import json, os, sys
rows = json.load(sys.stdin)
sys.exit(not any(r["agent_id"] == os.environ["AGENT_ID"] and r["connected"] for r in rows))'
}
for _ in $(seq 60); do connected && break; sleep 0.5; done
connected || { cat "$WORK/agent.log" 2>/dev/null; fail "the installed agent did not connect"; }
echo "the installed agent is connected"

step "reinstall over it (an upgrade): an edited config file and the state stay"
echo "# edited by the customer" >>/etc/aftercare/agent.toml
dpkg -i "$DEB"
grep -q "edited by the customer" /etc/aftercare/agent.toml || fail "the upgrade replaced agent.toml"
[ -f $STATE/spool.db ] || fail "the upgrade lost the state"

step "stop; dpkg -r keeps the state and the config"
if [ -d /run/systemd/system ]; then systemctl stop aftercare-agent.service; fi
[ -n "$AGENT_PID" ] && kill "$AGENT_PID" && wait "$AGENT_PID" 2>/dev/null || true
AGENT_PID=
dpkg -r aftercare-agent
[ ! -e /opt/aftercare-agent ] || fail "/opt/aftercare-agent left after dpkg -r"
[ ! -e /usr/bin/aftercare-agent ] || fail "/usr/bin/aftercare-agent left after dpkg -r"
[ -n "$(ls -A $STATE)" ] || fail "dpkg -r removed the state"
[ -f /etc/aftercare/agent.toml ] || fail "dpkg -r removed a conffile"

step "dpkg -P removes the state and the config"
dpkg -P aftercare-agent
[ ! -e $STATE ] || fail "$STATE left after dpkg -P"
[ ! -e /etc/aftercare/agent.toml ] || fail "/etc/aftercare/agent.toml left after dpkg -P"
echo "OK: the agent's .deb installs, enrols, connects and removes cleanly"
