#!/usr/bin/env bash
# Fetch the portal's pinned npm packages at build time (never committed):
# asciinema-player, which replays recordings and plays live sessions in the page.
# `npm pack` fetches the tarball; its sha512 must equal the pinned integrity below
# (the registry's dist.integrity for that version), else nothing is unpacked.
# Without npm the portal keeps its plain text terminal view (a warning, exit 0);
# a wrong checksum is an error (exit 1).
# Usage: packaging/vendor.sh [DEST]   (default collector/portal/static/vendor)
set -euo pipefail

NAME=asciinema-player
VERSION=3.18.0
INTEGRITY='sha512-5gpt2ipFcy4NKmgkv+c/QXnJ9zMicxqWROCOuJqgwwtiYKM8Qe9hnDOvfqke5bW6M2DW/seO3uQYkQ0xeUUVtw=='
FILES=(dist/bundle/asciinema-player.min.js dist/bundle/asciinema-player.css LICENSE)

DEST=${1:-collector/portal/static/vendor}/$NAME
if [[ -f $DEST/VERSION && $(cat "$DEST/VERSION") == "$VERSION $INTEGRITY" ]]; then
    exit 0
fi
if ! command -v npm >/dev/null; then
    echo "warning: npm not found: the portal shows recordings as plain text (install npm, then make vendor)" >&2
    exit 0
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$NAME@$VERSION" >/dev/null)
TARBALL=$WORK/$NAME-$VERSION.tgz
ACTUAL="sha512-$(openssl dgst -sha512 -binary "$TARBALL" | base64 -w0)"
if [[ $ACTUAL != "$INTEGRITY" ]]; then
    echo "error: $NAME@$VERSION has integrity $ACTUAL, expected $INTEGRITY: not unpacked" >&2
    exit 1
fi
tar -xzf "$TARBALL" -C "$WORK"
rm -rf "$DEST"
mkdir -p "$DEST"
for file in "${FILES[@]}"; do
    cp "$WORK/package/$file" "$DEST/"
done
echo "$VERSION $INTEGRITY" >"$DEST/VERSION"
echo "vendored $NAME@$VERSION into $DEST"
