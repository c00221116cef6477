#!/usr/bin/env bash
# Build the workshop image (default nbpool/notebook:latest) on the imported base.
#
#   notebook-image/build.sh [--force] [--tag TAG] [--base IMAGE]
#
# Idempotent: the image carries a label with a hash of this folder and of the
# base image's id; when an image with the same hash exists, nothing is built.
# Where the host defines a CA bundle (PIP_CERT, SSL_CERT_FILE or
# REQUESTS_CA_BUNDLE) it is passed to pip in the build's first stage only.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TAG=${NBPOOL_IMAGE:-nbpool/notebook:latest}
BASE=${NBPOOL_BASE_IMAGE:-nbpool/base:bookworm}
FORCE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --force) FORCE=1; shift ;;
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --base) BASE=${2:?--base needs a value}; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "notebook: ERROR: unknown argument: $1" >&2; exit 2 ;;
    esac
done
say() { printf 'notebook: %s\n' "$*"; }
die() { printf 'notebook: ERROR: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers; run 'make engine' first."
BASE_ID=$(docker image inspect -f '{{.Id}}' "$BASE" 2>/dev/null) \
    || die "base image $BASE is missing; run 'make images' (or arch-base/mkimage.sh) first."

# What the image is built from: every file here (build.sh aside) plus the base.
SOURCE_HASH=$( { echo "$BASE_ID"; cd "$HERE" && find . -type f ! -name build.sh ! -path './build-ca/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)
if [ "$FORCE" -eq 0 ]; then
    have=$(docker image inspect -f '{{index .Config.Labels "org.nbpool.source-hash"}}' "$TAG" 2>/dev/null || true)
    if [ "$have" = "$SOURCE_HASH" ]; then
        say "$TAG is up to date (source $SOURCE_HASH); nothing to do (use --force to rebuild)."
        exit 0
    fi
fi

CTX=$(mktemp -d "${TMPDIR:-/tmp}/nbpool-notebook-ctx.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
cp -a "$HERE/." "$CTX/"
rm -rf "$CTX/build-ca"; mkdir "$CTX/build-ca"; : >"$CTX/build-ca/ca.pem"
for var in PIP_CERT SSL_CERT_FILE REQUESTS_CA_BUNDLE; do
    f=${!var:-}
    if [ -n "$f" ] && [ -s "$f" ]; then
        cp "$f" "$CTX/build-ca/ca.pem"
        say "passing the host's CA bundle (\$$var) to pip inside the build."
        break
    fi
done

OLD_ID=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
LOG=${NBPOOL_BUILD_LOG:-${TMPDIR:-/tmp}/nbpool-notebook-build.log}
say "building $TAG from $BASE (first build: about two minutes of apt and pip downloads); full log: $LOG"
start=$(date +%s)
# The legacy builder is used on purpose: it needs no buildx plugin, so the same
# command works with Debian's docker.io and with newer CLIs. Only the step
# lines are shown; the whole output goes to $LOG and its tail is shown on failure.
set +e
DOCKER_BUILDKIT=0 docker build \
    --build-arg "BASE_IMAGE=$BASE" \
    --label "org.nbpool.source-hash=$SOURCE_HASH" \
    --label "org.nbpool.base=$BASE" \
    -t "$TAG" "$CTX" 2>&1 | tee "$LOG" | grep --line-buffered -E '^Step [0-9]+/[0-9]+ : (FROM|RUN|COPY)' | cut -c1-110
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
    tail -n 40 "$LOG" >&2
    die "docker build of $TAG failed (exit $status); the last lines are above, all of it in $LOG."
fi
# The image this build replaced is now untagged: remove it unless a container
# still uses it (assigned attendees keep running on the old image until culled).
NEW_ID=$(docker image inspect -f '{{.Id}}' "$TAG")
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    docker image rm "$OLD_ID" >/dev/null 2>&1 && say "removed the image it replaced (${OLD_ID#sha256:})" || true
fi
say "built $TAG in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.2f GB", $1 / 1e9 }'))."
