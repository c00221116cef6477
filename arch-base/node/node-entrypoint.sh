#!/bin/sh
# Start the inner Docker engine of a cluster node; extra arguments (the
# manager's second -H socket) are appended. Why each flag, see cluster.sh.
set -eu

# A restarted node container keeps its files: a stale pid file whose pid is
# reused (dockerd runs as pid 2 under tini every time) makes dockerd refuse.
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid

# Docker 20.10's swarm executor otherwise asks a registry for the image before
# it looks at the local copy; here no registry answers.
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1

set -- \
    -H unix:///var/run/docker.sock \
    --cgroup-parent="/$(hostname)" \
    --icc=false \
    --bip=10.200.0.1/24 \
    --default-address-pool base=10.201.0.0/16,size=24 \
    --log-driver json-file --log-opt max-size=5m --log-opt max-file=2 \
    "$@"
if dockerd --help 2>&1 | grep -q -- '--no-new-privileges'; then
    set -- --no-new-privileges "$@"
else
    echo "node-entrypoint: WARNING: this dockerd has no --no-new-privileges; containers may gain privileges" >&2
fi
# What the node's containers may reach, and who may reach them, is nbpool's agent's to keep
# (spawner/agent: a global service nbpool runs on every node).

echo "node-entrypoint: dockerd $*"
exec dockerd "$@"
