#!/usr/bin/env bash
# make engine: make a Docker engine reachable, or say exactly why not.
#
# Does nothing when `docker info` already answers. Otherwise, as root on
# Debian/Ubuntu, installs the distribution's docker.io package and starts
# dockerd detached (no systemd is assumed: containers and CI machines often
# have none), logging to $NBPOOL_DOCKERD_LOG, then waits for it with a deadline.
#
# dockerd is started with --live-restore, so restarting it later keeps every
# attendee's container running. Not on a swarm node: a daemon in a swarm
# refuses to start with live restore (drain such a node before restarting its
# engine instead); not when /etc/docker/daemon.json already decides it.
#
#   engine.sh --restart   stops the dockerd it runs (SIGTERM, as an upgrade
#                         does) and starts it again as above: what the chaos
#                         tests and benchmarks/faults.py do to nbpool.
set -euo pipefail

LOG=${NBPOOL_DOCKERD_LOG:-/var/log/nbpool-dockerd.log}
DEADLINE=${NBPOOL_ENGINE_TIMEOUT:-60}

say() { printf 'engine: %s\n' "$*"; }
# This machine's own dockerd: the one in our pid namespace. The nodes of `make
# cluster` run dockerd too, and their processes are visible from here.
host_dockerd() {
    local p ours
    ours=$(readlink /proc/self/ns/pid)
    for p in $(pgrep -x dockerd); do
        [ "$(readlink "/proc/$p/ns/pid" 2>/dev/null)" = "$ours" ] && { echo "$p"; return 0; }
    done
    return 1
}
die() { printf 'engine: ERROR: %s\n' "$*" >&2; exit 1; }

if [ "${1:-}" = "--restart" ]; then
    pid=$(host_dockerd) || die "--restart: no dockerd runs here to restart."
    say "restarting dockerd (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq $((DEADLINE * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then die "dockerd (pid $pid) did not stop within ${DEADLINE}s."; fi
fi

if docker info >/dev/null 2>&1; then
    say "Docker engine already reachable ($(docker info --format '{{.ServerVersion}}' 2>/dev/null)); nothing to do."
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    die "no Docker engine answers and this is not root, so I cannot start one.
  Install and start Docker (Debian/Ubuntu: 'sudo apt-get install docker.io' then
  'sudo systemctl start docker'), add yourself to the 'docker' group, and rerun."
fi

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

if host_dockerd >/dev/null; then
    say "dockerd is running but not answering yet; waiting for it."
else
    flags=()
    if [ -s /var/lib/docker/swarm/state.json ] && grep -q '"' /var/lib/docker/swarm/state.json; then
        say "this engine is a swarm node: starting it without live restore (drain the node before restarting it)"
    elif [ -f /etc/docker/daemon.json ] && grep -q '"live-restore"' /etc/docker/daemon.json; then
        say "live restore as /etc/docker/daemon.json says"
    else
        flags+=(--live-restore)
    fi
    say "starting dockerd ${flags[*]} in the background; its log is $LOG"
    mkdir -p "$(dirname "$LOG")"
    # setsid + nohup: the daemon must outlive this make invocation.
    setsid nohup dockerd "${flags[@]}" >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq "$DEADLINE"); do
    if docker info >/dev/null 2>&1; then
        say "Docker engine ready ($(docker info --format '{{.ServerVersion}} {{.Driver}} cgroup v{{.CgroupVersion}}, live restore {{.LiveRestoreEnabled}}' 2>/dev/null))."
        exit 0
    fi
    sleep 1
done
tail -n 20 "$LOG" >&2 || true
die "dockerd did not answer within ${DEADLINE}s; the last lines of $LOG are above."
