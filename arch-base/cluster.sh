#!/usr/bin/env bash
# make cluster / make cluster-down: a local Docker Swarm of node containers.
#
#   cluster.sh up [N]   a manager plus N workers (default 2); idempotent
#   cluster.sh down     removes the node containers, their volumes and the socket
#
# Each node is a container (image nbpool/node:bookworm, arch-base/node/) running
# Debian's dockerd on a volume, on the host's default bridge, so the host reaches
# every node (and the ports its tasks publish in host mode) at 172.17.x.
#
# Why it is built so:
# - The host engine stays out of the swarm: it runs with --live-restore (see
#   engine.sh), and a daemon in a swarm refuses live restore. So the manager is
#   a node container too, and the host engine is left exactly as it was.
# - The manager is drained: it runs only the swarm's control plane; notebooks
#   go to the workers. Its dockerd also listens on a socket in a host directory,
#   $SOCK_DIR/docker.sock, which is what nbpool uses as DOCKER_HOST.
# - DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 for every inner dockerd: Docker 20.10's
#   swarm executor otherwise tries a registry pull before using the local image,
#   and no registry is reachable. Images are copied into the workers instead
#   (docker save | docker load), only where the image ID differs.
# - --icc=false: attendees' containers on one node cannot reach each other.
# - --no-new-privileges as the engine default: Swarm service specs (API 1.41)
#   cannot ask for it per container.
# - --privileged fails on this kind of host (its bounding set lacks
#   CAP_SYS_RESOURCE), so nodes get an explicit list of capabilities, no
#   seccomp/AppArmor confinement, the host's cgroup tree, and a dockerd
#   --cgroup-parent of their own name (else they collide with the host's).
# - No restart policy: a node someone stopped stays down until the next `up`.
# - `up N` with fewer workers than exist leaves the extra workers running (they
#   may hold attendees' notebooks); `down` removes them all.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO_ROOT=$(cd "$HERE/.." && pwd)
NODE_IMAGE=${NBPOOL_NODE_IMAGE:-nbpool/node:bookworm}
BASE_IMAGE=${NBPOOL_BASE_IMAGE:-nbpool/base:bookworm}
IMAGES=${NBPOOL_CLUSTER_IMAGES:-nbpool/notebook:latest}
AGENT_IMAGE=${NBPOOL_AGENT_IMAGE:-nbpool/agent:latest}   # nbpool's node agent, on every node (global service)
DEADLINE=${NBPOOL_CLUSTER_TIMEOUT:-90}
LABEL=org.nbpool.cluster=local
MANAGER=nbpool-manager
SOCK_DIR=/run/nbpool-cluster
ENDPOINT="unix://$SOCK_DIR/docker.sock"
STATE_DIR="$REPO_ROOT/.cluster"
SWARM_POOL=10.202.0.0/16   # overlay networks; distinct from the nodes' 10.200/10.201

say() { printf 'cluster: %s\n' "$*"; }
die() { printf 'cluster: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; }
on() { local node=$1; shift; docker exec "$node" docker "$@"; }   # docker CLI inside a node
logs_of() { docker logs --tail 20 "$1" 2>&1 | sed 's/^/    /' >&2 || true; }

# Poll "$@" once a second until it succeeds or $DEADLINE seconds pass.
wait_for() {
    local i
    for i in $(seq "$DEADLINE"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    return 1
}

build_node_image() {
    local base_id hash have
    base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE" 2>/dev/null) \
        || die "base image $BASE_IMAGE is missing; run 'make images' first."
    hash=$( { echo "$base_id"; cat "$HERE/node/Dockerfile" "$HERE/node/node-entrypoint.sh"; } | sha256sum | cut -c1-16)
    have=$(docker image inspect -f '{{index .Config.Labels "org.nbpool.source-hash"}}' "$NODE_IMAGE" 2>/dev/null || true)
    if [ "$have" = "$hash" ]; then
        say "$NODE_IMAGE is up to date (source $hash)."
        return
    fi
    local log=${TMPDIR:-/tmp}/nbpool-node-build.log start=$SECONDS
    say "building $NODE_IMAGE (apt-get install docker.io; about a minute); log: $log"
    DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --label "org.nbpool.source-hash=$hash" -t "$NODE_IMAGE" "$HERE/node" >"$log" 2>&1 \
        || { tail -n 30 "$log" >&2; die "docker build of $NODE_IMAGE failed; the last lines are above."; }
    say "built $NODE_IMAGE in $((SECONDS - start))s."
}

# Make sure node container $1 exists and runs; its engine answering is checked later.
ensure_node() {
    local name=$1 state image_id
    state=$(docker inspect -f '{{.State.Status}}' "$name" 2>/dev/null || true)
    case "$state" in
        running)
            image_id=$(docker inspect -f '{{.Image}}' "$name")
            [ "$image_id" = "$(docker image inspect -f '{{.Id}}' "$NODE_IMAGE")" ] \
                || say "note: $name runs an older $NODE_IMAGE; 'make cluster-down' then 'make cluster' to use the new one."
            return ;;
        "")
            ;;
        *)
            say "starting $name (was $state)"
            docker start "$name" >/dev/null || die "could not start $name."
            return ;;
    esac
    # Only the manager shares the host's socket directory and listens there too;
    # its sockets belong to the host's docker group (root's where there is none),
    # not to whichever host group has the inner docker group's number.
    local mount=() args=()
    if [ "$name" = "$MANAGER" ]; then
        mount=(-v "$SOCK_DIR:$SOCK_DIR")
        args=(-H "$ENDPOINT" --group "$(getent group docker | cut -d: -f3 | grep . || echo 0)")
    fi
    docker volume create --label "$LABEL" "nbpool-cluster-$name" >/dev/null
    local caps=() c
    for c in SYS_ADMIN NET_ADMIN NET_RAW SYS_PTRACE MKNOD SYS_CHROOT SETFCAP AUDIT_WRITE \
             DAC_READ_SEARCH IPC_LOCK SYS_NICE NET_BROADCAST LINUX_IMMUTABLE SYS_MODULE; do
        caps+=(--cap-add "$c")
    done
    say "creating $name"
    docker run -d --name "$name" --hostname "$name" --label "$LABEL" \
        "${caps[@]}" \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
        -v "nbpool-cluster-$name:/var/lib/docker" \
        --log-opt max-size=10m --log-opt max-file=2 \
        "${mount[@]}" "$NODE_IMAGE" "${args[@]}" >/dev/null \
        || die "docker run of $name failed (see above)."
}

wait_engine() {
    wait_for on "$1" info || { logs_of "$1"; die "the engine in $1 did not answer within ${DEADLINE}s; its last log lines are above."; }
}

addr_of() { docker inspect -f '{{.NetworkSettings.Networks.bridge.IPAddress}}' "$1"; }

local_state() { on "$1" info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null; }
worker_active() { [ "$(local_state "$1")" = active ]; }
node_ready() { [ "$(on "$MANAGER" node inspect -f '{{.Status.State}}' "$1" 2>/dev/null)" = ready ]; }

manager_moved() {
    [ "$(on "$MANAGER" info -f '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ] \
        && [ "$(on "$MANAGER" info -f '{{.Swarm.NodeAddr}}')" != "$(addr_of "$MANAGER")" ]
}

setup_manager() {
    local addr swarm_addr
    addr=$(addr_of "$MANAGER")
    if [ "$(on "$MANAGER" info -f '{{.Swarm.ControlAvailable}}')" != true ]; then
        say "swarm init on $MANAGER ($addr)"
        on "$MANAGER" swarm init --advertise-addr "$addr" --default-addr-pool "$SWARM_POOL" >/dev/null \
            || die "docker swarm init failed in $MANAGER."
    fi
    swarm_addr=$(on "$MANAGER" info -f '{{.Swarm.NodeAddr}}')
    [ "$swarm_addr" = "$addr" ] || die "$MANAGER now has address $addr but the swarm knows it as $swarm_addr
  (it was restarted and got another address); rebuild the cluster: make cluster-down && make cluster"
    local self
    self=$(on "$MANAGER" info -f '{{.Swarm.NodeID}}')
    wait_for node_ready "$self" || die "$MANAGER is not Ready in its own swarm after ${DEADLINE}s."
    if [ "$(on "$MANAGER" node inspect -f '{{.Spec.Availability}}' "$self")" != drain ]; then
        on "$MANAGER" node update --availability drain "$self" >/dev/null
        say "$MANAGER drained (control plane only)"
    fi
}

join_worker() {
    local name=$1 state id
    state=$(local_state "$name")
    if [ "$state" != active ] && [ "$state" != pending ]; then
        say "joining $name to the swarm"
        [ "$state" = inactive ] || on "$name" swarm leave --force >/dev/null 2>&1 || true
        on "$name" swarm join --token "$(on "$MANAGER" swarm join-token -q worker)" \
            "$(addr_of "$MANAGER"):2377" >/dev/null || { logs_of "$name"; die "$name could not join the swarm."; }
    fi
    wait_for worker_active "$name" \
        || die "$name did not become an active swarm node within ${DEADLINE}s."
    id=$(on "$name" info -f '{{.Swarm.NodeID}}')
    wait_for node_ready "$id" || { logs_of "$name"; die "the swarm does not see $name Ready after ${DEADLINE}s."; }
}

# Remove swarm entries that are Down and belong to no node container any more
# (a worker removed by hand, or recreated and rejoined under a new ID).
prune_stale_nodes() {
    local live=" " c id host state
    for c in $(docker ps -q --filter "label=$LABEL"); do
        live+="$(docker exec "$c" docker info -f '{{.Swarm.NodeID}}' 2>/dev/null) "
    done
    on "$MANAGER" node ls --format '{{.ID}} {{.Hostname}} {{.Status}}' | while read -r id host state; do
        [ "$state" = Down ] || continue
        case "$live" in *" $id "*) continue ;; esac
        # A stopped node container keeps its entry: it comes back with the same ID.
        if [ "$(docker inspect -f '{{.State.Running}}' "$host" 2>/dev/null)" = false ]; then continue; fi
        on "$MANAGER" node rm --force "$id" >/dev/null && say "removed stale swarm entry $id ($host)"
    done
}

# Copy each image into every worker whose copy is missing or differs, in parallel.
load_images() {
    local img want w pids=() names=() i tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbpool-cluster-load.XXXXXX")
    for img in $IMAGES; do
        want=$(docker image inspect -f '{{.Id}}' "$img" 2>/dev/null) \
            || die "image $img is missing on the host; run 'make images' first."
        pids=(); names=()
        for w in "$@"; do
            [ "$(on "$w" image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)" = "$want" ] && continue
            say "loading $img into $w..."
            ( start=$SECONDS
              docker save "$img" | docker exec -i "$w" docker load >"$tmp/$w.log" 2>&1
              echo "$((SECONDS - start))" >"$tmp/$w.time" ) &
            pids+=($!); names+=("$w")
        done
        for i in "${!pids[@]}"; do
            w=${names[$i]}
            if ! wait "${pids[$i]}" || [ "$(on "$w" image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)" != "$want" ]; then
                cat "$tmp/$w.log" >&2 2>/dev/null || true
                rm -rf "$tmp"; die "loading $img into $w failed (see above)."
            fi
            say "loaded $img into $w in $(cat "$tmp/$w.time")s"
        done
        [ "${#pids[@]}" -gt 0 ] || say "$img is already on every worker."
    done
    rm -rf "$tmp"
}

up() {
    local n=$1 start=$SECONDS i w workers=()
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "up needs a number of workers >= 1, not '$n'."
    [ "$(id -u)" -eq 0 ] || die "the node containers share the host's cgroup tree; run this as root."
    docker info >/dev/null 2>&1 || die "no Docker engine answers; run 'make engine' first."
    for i in $(seq "$n"); do workers+=("nbpool-node-$i"); done

    build_node_image
    bash "$HERE/agent/build.sh" "$AGENT_IMAGE" | sed 's/^agent: /cluster: /'
    mkdir -p "$SOCK_DIR"
    for w in "$MANAGER" "${workers[@]}"; do ensure_node "$w"; done
    for w in "$MANAGER" "${workers[@]}"; do wait_engine "$w"; done
    if manager_moved; then
        # The default bridge gives a restarted container whatever address is free, and a swarm
        # cannot follow its only manager to a new one: start over (a dev cluster holds nothing to keep).
        say "$MANAGER came back with another address, which its swarm cannot follow: rebuilding the cluster"
        down
        exec bash "$0" up "$n"
    fi
    setup_manager
    for w in "${workers[@]}"; do join_worker "$w"; done
    prune_stale_nodes
    load_images "${workers[@]}"
    IMAGES=$AGENT_IMAGE load_images "$MANAGER" "${workers[@]}"

    mkdir -p "$STATE_DIR"
    echo "$ENDPOINT" >"$STATE_DIR/endpoint"

    local extra
    extra=$(docker ps -a --filter "label=$LABEL" --format '{{.Names}}' | grep -E '^nbpool-node-[0-9]+$' \
        | sort -V | while read -r w; do [ "${w#nbpool-node-}" -gt "$n" ] && echo "$w"; done | tr '\n' ' ' || true)
    say "swarm nodes (the manager's view):"
    on "$MANAGER" node ls --format '{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}' \
        | sort | while read -r host status avail mgr; do
            printf '  %-16s %-12s %-6s %-7s %s\n' "$host" "$(addr_of "$host" 2>/dev/null || echo '?')" "$status" "$avail" "$mgr"
        done
    [ -z "$extra" ] || say "left running beyond the $n asked for: $extra('make cluster-down' removes them)"
    say "ready in $((SECONDS - start))s; endpoint written to ${STATE_DIR#"$REPO_ROOT"/}/endpoint"
    echo "DOCKER_HOST=$ENDPOINT"
}

down() {
    local ids vols d
    docker info >/dev/null 2>&1 || die "no Docker engine answers; run 'make engine' first."
    ids=$(docker ps -aq --filter "label=$LABEL")
    vols=$(docker volume ls -q --filter "label=$LABEL")
    if [ -z "$ids" ] && [ -z "$vols" ] && [ ! -e "$SOCK_DIR" ] && [ ! -e "$STATE_DIR" ]; then
        say "no local cluster exists; nothing to do."
        return
    fi
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086
        docker rm -f $ids >/dev/null || die "could not remove the node containers."
        say "removed $(echo "$ids" | wc -l) node containers"
    fi
    if [ -n "$vols" ]; then
        # shellcheck disable=SC2086
        docker volume rm $vols >/dev/null || die "could not remove the node volumes."
        say "removed $(echo "$vols" | wc -l) node volumes"
    fi
    rm -rf "$SOCK_DIR" "$STATE_DIR"
    # The inner engines made /<node> parents in the host's cgroup tree; drop the
    # empty ones (rmdir cannot remove a cgroup that still has processes).
    for d in /sys/fs/cgroup/*/"$MANAGER" /sys/fs/cgroup/*/nbpool-node-[0-9]*; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    say "cluster removed ($NODE_IMAGE kept; the host engine was never in the swarm)."
}

case "${1:-}" in
    up) up "${2:-2}" ;;
    down) down ;;
    -h|--help) usage ;;
    *) usage >&2; die "unknown command '${1:-}'; use 'up N' or 'down'." ;;
esac
