#!/usr/bin/env bash
# Build the base OS image from scratch and `docker import` it as nbpool/base:<suite>.
#
#   arch-base/mkimage.sh [--distro debian|arch] [--suite SUITE] [--force]
#
# No registry is needed: the root filesystem is bootstrapped from the host's
# own package mirror (debootstrap; pacstrap for Arch), trimmed, and imported.
# Idempotent: does nothing when the tag already exists, unless --force.
#
# Environment:
#   NBPOOL_DEBIAN_MIRROR  Debian mirror URL (default: read from the host's apt sources)
#   NBPOOL_BASE_REPO      image repository name (default: nbpool/base)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
DISTRO=debian
SUITE=
FORCE=0
REPO=${NBPOOL_BASE_REPO:-nbpool/base}

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf 'base: %s\n' "$*"; }
die() { printf 'base: ERROR: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --distro) DISTRO=${2:?--distro needs a value}; shift 2 ;;
        --distro=*) DISTRO=${1#*=}; shift ;;
        --suite) SUITE=${2:?--suite needs a value}; shift 2 ;;
        --suite=*) SUITE=${1#*=}; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$DISTRO" in
    debian) SUITE=${SUITE:-bookworm} ;;
    arch) SUITE=${SUITE:-latest} ;;
    *) die "--distro must be 'debian' or 'arch', not '$DISTRO'" ;;
esac
TAG="$REPO:$SUITE"

docker info >/dev/null 2>&1 || die "no Docker engine answers; run 'make engine' first."

if [ "$FORCE" -eq 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
    say "$TAG already exists; nothing to do (use --force to rebuild)."
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "bootstrapping a root filesystem needs root (device nodes, chroot)."

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nbpool-rootfs.XXXXXX")
ROOTFS="$WORK/rootfs"
cleanup() {
    # debootstrap/pacstrap may leave /proc or /sys mounted inside the tree.
    for m in proc sys dev/pts dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
mkdir -p "$ROOTFS"

# Read the Debian mirror from the host's own apt configuration (deb822 *.sources
# first, then one-line sources.list), so no mirror host is named here.
host_debian_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        uri=$(awk '
            /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )'"$SUITE"'( |$)/) { print uri; exit } uri=""; suites="" ; next }
            /^URIs:/ { uri=$2 }
            /^Suites:/ { $1=""; suites=$0 " " }
            END { if (uri != "" && suites ~ /(^| )'"$SUITE"'( |$)/) print uri }' "$f" | head -n1)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) ~ /^'"$SUITE"'$/ || $(i+1) ~ /^(stable|testing|sid)$/) { print $i; exit } break } }' "$f" | head -n1)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
}

make_dev() {
    # A minimal /dev, as the seed's mkimage-arch.sh made: Docker mounts its own
    # /dev at run time, but tools run during the build expect these to exist.
    local dev="$ROOTFS/dev"
    rm -rf "$dev"; mkdir -m 755 "$dev"
    mknod -m 666 "$dev/null" c 1 3
    mknod -m 666 "$dev/zero" c 1 5
    mknod -m 666 "$dev/full" c 1 7
    mknod -m 666 "$dev/random" c 1 8
    mknod -m 666 "$dev/urandom" c 1 9
    mknod -m 666 "$dev/tty" c 5 0
    mknod -m 600 "$dev/console" c 5 1
    mknod -m 666 "$dev/ptmx" c 5 2
    mkdir -m 755 "$dev/pts"
    mkdir -m 1777 "$dev/shm"
    ln -sf /proc/self/fd "$dev/fd"
    ln -sf /proc/self/fd/0 "$dev/stdin"
    ln -sf /proc/self/fd/1 "$dev/stdout"
    ln -sf /proc/self/fd/2 "$dev/stderr"
}

build_debian() {
    command -v debootstrap >/dev/null 2>&1 || {
        say "installing debootstrap..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null \
            || die "debootstrap is missing and could not be installed (apt-get install debootstrap)."
    }
    MIRROR=${NBPOOL_DEBIAN_MIRROR:-$(host_debian_mirror)}
    [ -n "$MIRROR" ] || die "no Debian mirror for '$SUITE' found in /etc/apt/sources*; set NBPOOL_DEBIAN_MIRROR."
    say "debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)..."
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)."; }

    # Keep images small from here on: no docs, man pages or foreign locales in
    # any later layer, no recommends, and apt's caches dropped after each install.
    cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/01-nbpool-nodoc" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
    cat >"$ROOTFS/etc/apt/apt.conf.d/01-nbpool-small" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
CFG
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" >"$ROOTFS/etc/apt/sources.list"
    find "$ROOTFS/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$ROOTFS"/usr/share/{man,info,groff,lintian,linda}/* "$ROOTFS"/var/cache/apt/*.bin \
           "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
    find "$ROOTFS/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    echo "nbpool" >"$ROOTFS/etc/hostname"
    BUILT_FROM="$MIRROR"
}

build_arch() {
    command -v pacstrap >/dev/null 2>&1 || die "pacstrap is not installed on this host (it comes with Arch's arch-install-scripts);
  build the Debian base instead: arch-base/mkimage.sh --distro debian"
    local server
    server=$(awk -F' = ' '/^Server/ { print $2; exit }' "$HERE/mirrorlist")
    server=${server//\$repo/core}; server=${server//\$arch/x86_64}
    curl -fsS -m 15 -o /dev/null "$server/core.db" 2>/dev/null \
        || die "the Arch mirror $server is unreachable from here; edit arch-base/mirrorlist or build --distro debian."
    say "pacstrap from $server..."
    # -c: use the host cache; -d: allow a non-mountpoint; -G: keep the host keyring out; -M: no host mirrorlist.
    # The kept pacman.conf names its mirrorlist by placeholder: point it at this checkout's.
    sed "s|@MIRRORLIST@|$HERE/mirrorlist|" "$HERE/pacman.conf" >"$WORK/pacman.conf"
    env -i PATH="$PATH" pacstrap -C "$WORK/pacman.conf" -c -d -G -M "$ROOTFS" \
        bash coreutils filesystem pacman sed grep gzip tar which archlinux-keyring ca-certificates \
        || die "pacstrap failed (messages above)."
    cp "$HERE/mirrorlist" "$ROOTFS/etc/pacman.d/mirrorlist"
    arch-chroot "$ROOTFS" /bin/sh -c 'pacman-key --init && pacman-key --populate archlinux' \
        || die "initialising the pacman keyring failed."
    echo 'en_US.UTF-8 UTF-8' >"$ROOTFS/etc/locale.gen"
    arch-chroot "$ROOTFS" locale-gen >/dev/null 2>&1 || true
    rm -rf "$ROOTFS"/usr/share/{man,info,doc}/* "$ROOTFS"/var/cache/pacman/pkg/*
    BUILT_FROM="$server"
}

"build_$DISTRO"
make_dev

say "importing the root filesystem as $TAG..."
BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOCALE=C.UTF-8; [ "$DISTRO" = arch ] && LOCALE=en_US.UTF-8
tar --numeric-owner --xattrs --acls -C "$ROOTFS" -c . | docker import \
    --change "LABEL org.nbpool.distro=$DISTRO org.nbpool.suite=$SUITE org.nbpool.mirror=$BUILT_FROM org.nbpool.build-date=$BUILD_DATE" \
    --change "ENV LANG=$LOCALE LC_ALL=$LOCALE PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change 'CMD ["/bin/bash"]' \
    --message "nbpool base: $DISTRO $SUITE, bootstrapped $BUILD_DATE" \
    - "$TAG" >/dev/null
say "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{ printf "%.0f MB", $1 / 1e6 }'))."
