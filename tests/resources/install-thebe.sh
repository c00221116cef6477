#!/usr/bin/env bash
# make browser (with Chromium): Thebe 0.9.3, the library pages use to run live code, for the end-to-end
# test of nbpool as their Binder. From the npm registry the host's npm is configured with (no CDN is
# reachable), pinned and checked against the registry's published integrity; `npm pack` takes the
# bundle alone (its lib/ holds every dependency), without installing hundreds of packages.
set -euo pipefail
VERSION=0.9.3
INTEGRITY="sha512-Rb/7kVhtlffXra3kIe7OuIGE7awsm2/fGWxw21DiNfnWLnUQiDl9AWqYdshPwZPG/5DzLpsJRPix2xtCPtJmQQ=="
DEST=${NBPOOL_THEBE_DIR:-tests/.cache/thebe-$VERSION}
if [ -f "$DEST/lib/index.js" ] && [ -f "$DEST/lib/thebe.css" ]; then
    echo "thebe: $VERSION present in $DEST"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "thebe: installing Debian's npm package (first run only)..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null; }
    else
        echo "thebe: npm is missing (apt-get install npm); the Thebe test skips outside CI and fails under CI=true" >&2
        exit 0
    fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "thebe@$VERSION" >/dev/null)
tarball="$work/thebe-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
    echo "thebe: ERROR: thebe-$VERSION.tgz does not match its published integrity ($got)" >&2
    exit 1
fi
mkdir -p "$work/x" && tar -xzf "$tarball" -C "$work/x"
rm -rf "$DEST" && mkdir -p "$DEST"
mv "$work/x/package/lib" "$DEST/lib"
rm -rf "$DEST/lib/types" && find "$DEST/lib" -name '*.map' -delete
echo "thebe: $VERSION unpacked into $DEST"
