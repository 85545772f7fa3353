#!/usr/bin/env bash
# CI check of the .deb packages, run as root by .ci/run: install the collector's and the
# agent's .deb with dpkg -i, start the installed collector as its unit does, enrol the
# installed agent (as its `aftercare` user) with it, start the agent, wait until the
# collector lists it connected; upgrade over it (edited config and state kept); then
# `dpkg -r` (state and config kept, programs gone) and `dpkg -P` (state and config
# gone). Prints the installed sizes. Refuses to run over existing installations.
# Usage: packaging/ci-debs.sh [AGENT.deb COLLECTOR.deb]   (default: build them)
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "error: run as root (it installs packages)" >&2; exit 2; }
for name in aftercare-agent aftercare-collector; do
    if dpkg -s "$name" >/dev/null 2>&1; then
        echo "error: $name is already installed here; remove it first" >&2
        exit 2
    fi
done
if [ $# -eq 0 ]; then
    packaging/build.sh agent deb
    packaging/build.sh collector deb
    set -- build/packages/aftercare-agent_*.deb build/packages/aftercare-collector_*.deb
fi
AGENT_DEB=$1 COLLECTOR_DEB=$2
STATE=/var/lib/aftercare-agent
DATA=/var/lib/aftercare-collector
WORK=$(mktemp -d)
chmod 0755 "$WORK"
COLLECTOR_PID= AGENT_PID=
SYSTEMD=; [ -d /run/systemd/system ] && SYSTEMD=yes
cleanup() {
    [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
    [ -n "$COLLECTOR_PID" ] && kill "$COLLECTOR_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    for name in aftercare-agent aftercare-collector; do
        if dpkg -s "$name" >/dev/null 2>&1; then dpkg -P "$name" >/dev/null || true; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }
mode() { stat -c '%a %U:%G' "$1"; }
# Start a unit, or (no systemd: containers) its ExecStart as its User, in the background.
start_unit() {
    local unit=/usr/lib/systemd/system/$1.service user exec
    if [ -n "$SYSTEMD" ]; then systemctl start "$1"; return; fi
    user=$(sed -n 's/^User=//p' "$unit")
    exec=$(sed -n 's/^ExecStart=//p' "$unit")
    local envfile; envfile=$(sed -n 's/^EnvironmentFile=//p' "$unit")
    # shellcheck disable=SC1090
    [ -n "$envfile" ] && set -a && . "$envfile" && set +a
    # shellcheck disable=SC2086
    runuser -u "$user" -- $(eval echo "$exec") >"$WORK/$1.log" 2>&1 &
    LAST_PID=$!
}

step "install $COLLECTOR_DEB and $AGENT_DEB"
dpkg -i "$COLLECTOR_DEB" "$AGENT_DEB"
getent passwd aftercare >/dev/null || fail "no aftercare system user"
getent passwd aftercare-collector >/dev/null || fail "no aftercare-collector system user"
[ "$(mode $STATE)" = "700 aftercare:aftercare" ] || fail "agent state dir: $(mode $STATE)"
[ "$(mode $DATA)" = "700 aftercare-collector:aftercare-collector" ] || fail "data dir: $(mode $DATA)"
[ "$(mode /etc/aftercare/agent.toml)" = "640 root:aftercare" ] || fail "agent.toml mode"
[ "$(mode /etc/aftercare/policy.toml)" = "644 root:root" ] || fail "policy.toml mode"
grep -qx /etc/aftercare/agent.toml /var/lib/dpkg/info/aftercare-agent.conffiles || fail "conffiles"
aftercare-agent --version
aftercare-collector --version
for name in aftercare-agent aftercare-collector; do
    echo "installed size of $name: $(dpkg-query -W -f='${Installed-Size}' $name) KiB"
done
for absent in grpc paramiko prometheus_client collector; do
    if /opt/aftercare-agent/venv/bin/python -I -c "import $absent" 2>/dev/null; then
        fail "the agent's venv has $absent"
    fi
done

step "start the installed collector"
read -r AGENT_PORT API_PORT METRICS_PORT SSH_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
cat >/etc/aftercare/collector.env <<ENV
AFTERCARE_COLLECTOR_OPTIONS="--listen 127.0.0.1:$AGENT_PORT --api-listen 127.0.0.1:$API_PORT --metrics-listen 127.0.0.1:$METRICS_PORT --ssh-listen 127.0.0.1:$SSH_PORT"
ENV
start_unit aftercare-collector
COLLECTOR_PID=${LAST_PID:-}
for _ in $(seq 120); do [ -f $DATA/endpoints.json ] && break; sleep 0.5; done
[ -f $DATA/endpoints.json ] || { cat "$WORK"/*.log; fail "the collector did not start"; }

step "enrol the installed agent as user aftercare"
JOIN=$(runuser -u aftercare-collector -- aftercare-collector token create --data-dir $DATA \
    --customer ci --json)
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$2'])" <<<"$1"; }
ENROLLED=$(runuser -u aftercare -- aftercare-agent enroll --state-dir $STATE --json \
    --collector "$(field "$JOIN" collector)" --token "$(field "$JOIN" token)" \
    --ca-hash "$(field "$JOIN" ca_hash)")
AGENT_ID=$(field "$ENROLLED" agent_id)
echo "enrolled as $AGENT_ID"

step "start the agent"
start_unit aftercare-agent
AGENT_PID=${LAST_PID:-}
export AFTERCARE_COLLECTOR=127.0.0.1:$API_PORT AFTERCARE_CA_FILE=$WORK/ca.pem
cp $DATA/ca.pem "$WORK/ca.pem"
AFTERCARE_TOKEN=$(cat $DATA/admin-token)
export AFTERCARE_TOKEN
connected() {
    aftercare agents --json | AGENT_ID=$AGENT_ID python3 -c '
import json, os, sys
rows = json.load(sys.stdin)
sys.exit(not any(r["agent_id"] == os.environ["AGENT_ID"] and r["connected"] for r in rows))'
}
for _ in $(seq 60); do connected && break; sleep 0.5; done
connected || { cat "$WORK"/*.log; fail "the installed agent did not connect"; }
echo "the installed agent is connected to the installed collector"

step "reinstall over it (an upgrade): an edited config file and the state stay"
echo "# edited by the customer" >>/etc/aftercare/agent.toml
dpkg -i "$AGENT_DEB"
grep -q "edited by the customer" /etc/aftercare/agent.toml || fail "the upgrade replaced agent.toml"
[ -f $STATE/spool.db ] || fail "the upgrade lost the state"

step "stop; dpkg -r keeps the state and the config"
if [ -n "$SYSTEMD" ]; then systemctl stop aftercare-agent aftercare-collector; fi
for pid in $AGENT_PID $COLLECTOR_PID; do kill "$pid" && wait "$pid" 2>/dev/null || true; done
AGENT_PID= COLLECTOR_PID=
dpkg -r aftercare-agent aftercare-collector
for gone in /opt/aftercare-agent /opt/aftercare-collector /usr/bin/aftercare-agent \
    /usr/bin/aftercare-collector /usr/bin/aftercare; do
    [ ! -e $gone ] || fail "$gone left after dpkg -r"
done
[ -n "$(ls -A $STATE)" ] || fail "dpkg -r removed the agent's state"
[ -f $DATA/ca.pem ] || fail "dpkg -r removed the collector's data"
[ -f /etc/aftercare/agent.toml ] || fail "dpkg -r removed a conffile"

step "dpkg -P removes the state and the config"
dpkg -P aftercare-agent aftercare-collector
for gone in $STATE $DATA /etc/aftercare; do
    [ ! -e $gone ] || fail "$gone left after dpkg -P"
done
echo "OK: the .debs install, the agent enrols and connects, and both remove cleanly"
