#!/usr/bin/env bash
# Build nbpool's node agent image (default nbpool/agent:latest) from the imported base image: the agent's
# modules only (spawner/agent, the process probe, the firewall), so the image holds no more of nbpool.
# Skips the build when the image was made from the same sources. Usage: build.sh [TAG]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TAG=${1:-${NBPOOL_AGENT_IMAGE:-nbpool/agent:latest}}
BASE_IMAGE=${NBPOOL_BASE_IMAGE:-nbpool/base:bookworm}
FILES=(spawner/__init__.py spawner/traits.py spawner/engines/__init__.py spawner/engines/base.py
       spawner/engines/firewall.py spawner/probe.py
       spawner/agent/__init__.py spawner/agent/__main__.py spawner/agent/node.py)
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
    || { echo "agent: base image $BASE_IMAGE is missing; run 'make images' first" >&2; exit 1; }
hash=$( { echo "$base_id"; cat "$HERE/Dockerfile"; for f in "${FILES[@]}"; do cat "$ROOT/$f"; done; } \
        | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{index .Config.Labels "org.nbpool.source-hash"}}' "$TAG" 2>/dev/null || true)
if [ "$have" = "$hash" ]; then
    echo "agent: $TAG is up to date (source $hash)."
    exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$HERE/Dockerfile" "$context/"
for f in "${FILES[@]}"; do mkdir -p "$context/$(dirname "$f")"; cp "$ROOT/$f" "$context/$f"; done
log=${TMPDIR:-/tmp}/nbpool-agent-build.log
start=$SECONDS
echo "agent: building $TAG (apt-get install python3 iptables; about a minute); log: $log"
DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "org.nbpool.source-hash=$hash" \
    -t "$TAG" "$context" >"$log" 2>&1 || { tail -n 30 "$log" >&2; echo "agent: docker build failed" >&2; exit 1; }
echo "agent: built $TAG in $((SECONDS - start))s."
