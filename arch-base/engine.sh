#!/usr/bin/env bash
# make engine: make a Docker engine reachable, or say exactly why not.
#
# Does nothing when `docker info` already answers (it says whether that engine
# bounds each container's disk). Otherwise, as root on Debian/Ubuntu, installs
# the distribution's docker.io package and starts dockerd detached (no systemd
# is assumed: containers and CI machines often have none), logging to
# $NBPOOL_DOCKERD_LOG, then waits for it with a deadline.
#
# dockerd is started with --live-restore, so restarting it later keeps every
# attendee's container running. Not on a swarm node: a daemon in a swarm
# refuses to start with live restore (drain such a node before restarting its
# engine instead); not when /etc/docker/daemon.json already decides it.
#
# A disk quota per container (issue 24), asked for: where Docker's own data
# root (/var/lib/docker) offers none (overlay2 has one only on xfs with
# pquota; a btrfs data root has one), NBPOOL_ENGINE_QUOTA=1 gives the engine a
# btrfs data root kept in a sparse file, with quota groups, and Docker's btrfs
# driver: a container then cannot write past nbpool's disk_limit at all (see
# engine-btrfs.sh). It costs container starts and removals dearly on a small
# machine (docs/measured/disk-quota.md), so it is not the default: without it
# nbpool's watchdog measures each container's disk. Later runs reuse the file
# (a data root made once is kept); after a reboot they mount it again.
#   NBPOOL_ENGINE_QUOTA=1       give a new engine a btrfs data root with quotas where the host has none
#   NBPOOL_ENGINE_QUOTA=0       keep Docker's default data root, even if a btrfs one was made before
#   NBPOOL_ENGINE_DISK=SIZE     the btrfs file's size when it is created, e.g. 200G (default: half the
#                               space free where it is kept, at least 16G); a ceiling, not an allocation
#   NBPOOL_ENGINE_DISK_FILE     the file (default /var/lib/nbpool-engine.btrfs)
#   NBPOOL_ENGINE_ROOT          where it is mounted: the engine's data root (default /var/lib/nbpool-docker)
#
#   engine.sh --restart   stops the dockerd it runs (SIGTERM, as an upgrade
#                         does) and starts it again with the same arguments:
#                         what the chaos tests and benchmarks/faults.py do to nbpool.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
LOG=${NBPOOL_DOCKERD_LOG:-/var/log/nbpool-dockerd.log}
DEADLINE=${NBPOOL_ENGINE_TIMEOUT:-60}
QUOTA=${NBPOOL_ENGINE_QUOTA:-}
DISK_FILE=${NBPOOL_ENGINE_DISK_FILE:-/var/lib/nbpool-engine.btrfs}
ROOT=${NBPOOL_ENGINE_ROOT:-/var/lib/nbpool-docker}
DEFAULT_ROOT=/var/lib/docker

say() { printf 'engine: %s\n' "$*"; }
# This machine's own dockerd: the one in our pid namespace. The nodes of `make
# cluster` run dockerd too, and their processes are visible from here. The one
# the default socket serves wrote its pid to /var/run/docker.pid: preferred,
# should a second daemon run beside it.
host_dockerd() {
    local p ours
    ours=$(readlink /proc/self/ns/pid)
    p=$(cat /var/run/docker.pid 2>/dev/null || true)
    if [ -n "$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = dockerd ] \
        && [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$ours" ]; then
        echo "$p"; return 0
    fi
    for p in $(pgrep -x dockerd); do
        [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$ours" ] && { echo "$p"; return 0; }
    done
    return 1
}
die() { printf 'engine: ERROR: %s\n' "$*" >&2; exit 1; }

# What bounds a container's disk on the engine that answers, in words.
engine_quota() {
    local driver backing
    driver=$(docker info --format '{{.Driver}}' 2>/dev/null || true)
    backing=$(docker info --format '{{range .DriverStatus}}{{if eq (index . 0) "Backing Filesystem"}}{{index . 1}}{{end}}{{end}}' 2>/dev/null || true)
    case "$driver/$backing" in
        btrfs/*) echo "disk quota per container: yes (btrfs quota groups)" ;;
        overlay2/xfs) echo "disk quota per container: yes if its xfs is mounted with pquota" ;;
        *) echo "disk quota per container: no ($driver on ${backing:-?}; nbpool's watchdog measures disks)" ;;
    esac
}

restart_args=()
if [ "${1:-}" = "--restart" ]; then
    pid=$(host_dockerd) || die "--restart: no dockerd runs here to restart."
    # The same arguments as before (data root, storage driver, live restore): a restart must bring
    # back the same engine, with the same images and containers.
    mapfile -d '' -t restart_args < "/proc/$pid/cmdline"
    restart_args=("${restart_args[@]:1}")
    say "restarting dockerd (pid $pid) ${restart_args[*]}"
    kill -TERM "$pid"
    for _ in $(seq $((DEADLINE * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then die "dockerd (pid $pid) did not stop within ${DEADLINE}s."; fi
    restarting=1
fi

if docker info >/dev/null 2>&1; then
    say "Docker engine already reachable ($(docker info --format '{{.ServerVersion}}' 2>/dev/null)); nothing to do."
    say "$(engine_quota)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    die "no Docker engine answers and this is not root, so I cannot start one.
  Install and start Docker (Debian/Ubuntu: 'sudo apt-get install docker.io' then
  'sudo systemctl start docker'), add yourself to the 'docker' group, and rerun."
fi

# shellcheck source=/dev/null
. /etc/os-release 2>/dev/null || true
case " ${ID:-} ${ID_LIKE:-} " in
    *" debian "*|*" ubuntu "*) ;;
    *) die "no Docker engine answers, and this is ${PRETTY_NAME:-an unknown OS}, not Debian/Ubuntu.
  Install Docker Engine for your OS (https://docs.docker.com/engine/install/), start it, and rerun." ;;
esac

if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Debian's docker.io package (first run only)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed; check the apt sources in /etc/apt."
    apt-get install -y -qq --no-install-recommends docker.io iptables >/dev/null \
        || die "apt-get install docker.io failed (see the messages above)."
    say "installed $(dockerd --version)"
fi

# Where the engine keeps its files, and with which storage driver: flags for dockerd.
data_root_flags() {
    local why=""
    if [ "$QUOTA" = 0 ] || { [ -z "$QUOTA" ] && [ ! -e "$DISK_FILE" ]; }; then
        say "Docker's default data root${QUOTA:+ (NBPOOL_ENGINE_QUOTA=0)}: where it has no per-container disk quota," \
            "nbpool's watchdog measures disks (NBPOOL_ENGINE_QUOTA=1 gives a new engine a btrfs data root with quotas)"
        return
    fi
    if [ -f /etc/docker/daemon.json ] && grep -Eq '"(data-root|storage-driver)"' /etc/docker/daemon.json; then
        say "data root and storage driver as /etc/docker/daemon.json says"
        return
    fi
    if [ ! -e "$DISK_FILE" ] && ! mountpoint -q "$ROOT"; then
        local fs
        fs=$(bash "$HERE/engine-btrfs.sh" quota "$DEFAULT_ROOT")
        case "$fs" in
            btrfs|xfs-pquota)
                say "$DEFAULT_ROOT is on $fs: Docker bounds each container's disk there itself"
                return ;;
        esac
        why="$DEFAULT_ROOT is on a filesystem without a per-container quota: $fs"
    fi
    local size=${NBPOOL_ENGINE_DISK:-}
    if [ -z "$size" ] && [ ! -e "$DISK_FILE" ]; then
        size=$(bash "$HERE/engine-btrfs.sh" size "$(dirname "$DISK_FILE")") || return 1
    fi
    [ -n "$why" ] && say "$why; giving the engine a btrfs data root (NBPOOL_ENGINE_QUOTA=1; =0: do not)"
    bash "$HERE/engine-btrfs.sh" setup "$DISK_FILE" "$ROOT" "${size:-0}" || return 1
    flags+=(--data-root "$ROOT" --storage-driver btrfs)
    say "data root $ROOT (btrfs, $(df -h --output=size "$ROOT" | tail -n1 | tr -d ' ') at most, kept in $DISK_FILE):" \
        "each container's disk is bounded by btrfs quota groups"
}

if host_dockerd >/dev/null; then
    say "dockerd is running but not answering yet; waiting for it."
else
    flags=()
    if [ -n "${restarting:-}" ]; then
        flags=("${restart_args[@]}")
        # Its btrfs data root must be mounted, with quota groups on, before dockerd is back (setup only
        # checks, when both already are).
        if [[ " ${flags[*]} " == *" --data-root $ROOT "* ]]; then
            bash "$HERE/engine-btrfs.sh" setup "$DISK_FILE" "$ROOT" 0
        fi
    else
        if ! data_root_flags; then
            say "WARNING: no btrfs data root (the reason is above): starting the engine on $DEFAULT_ROOT" \
                "without a per-container disk quota; nbpool's watchdog measures disks instead"
        fi
        state="$DEFAULT_ROOT/swarm/state.json"
        [[ " ${flags[*]} " == *" --data-root $ROOT "* ]] && state="$ROOT/swarm/state.json"
        if [ -s "$state" ] && grep -q '"' "$state"; then
            say "this engine is a swarm node: starting it without live restore (drain the node before restarting it)"
        elif [ -f /etc/docker/daemon.json ] && grep -q '"live-restore"' /etc/docker/daemon.json; then
            say "live restore as /etc/docker/daemon.json says"
        else
            flags=(--live-restore "${flags[@]}")
        fi
    fi
    say "starting dockerd ${flags[*]} in the background; its log is $LOG"
    mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: the daemon must outlive this make invocation.
    setsid nohup dockerd "${flags[@]}" >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq "$DEADLINE"); do
    if docker info >/dev/null 2>&1; then
        say "Docker engine ready ($(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}}, live restore {{.LiveRestoreEnabled}}' 2>/dev/null))."
        say "$(engine_quota)"
        exit 0
    fi
    sleep 1
done
tail -n 20 "$LOG" >&2 || true
die "dockerd did not answer within ${DEADLINE}s; the last lines of $LOG are above."
