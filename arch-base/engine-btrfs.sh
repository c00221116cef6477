#!/usr/bin/env bash
# The btrfs data root that gives `make engine` a per-container disk quota (issue 24).
#
#   engine-btrfs.sh tools                  install Debian's btrfs-progs when mkfs.btrfs is missing
#   engine-btrfs.sh quota DIR              does DIR's filesystem give Docker a per-container quota?
#                                          prints 'btrfs', 'xfs-pquota' or 'none (<fs type>)'
#   engine-btrfs.sh size DIR               the default size of a btrfs file kept in DIR: half the
#                                          space free there, at least 16G; fails when that does not fit
#   engine-btrfs.sh setup FILE MOUNT SIZE  make MOUNT a btrfs with quota groups, kept in FILE (sparse):
#                                          created and formatted when FILE is missing, mounted when it
#                                          is not; quota groups enabled. Idempotent.
#
# Why btrfs: Docker's overlay2 driver has a per-container quota only on xfs
# mounted with pquota, and XFS quotas need kernel support that many machines
# lack; Docker's btrfs driver enforces `--storage-opt size` with btrfs quota
# groups, which work on a loop-mounted file. A container's writes then stop at
# its limit ("Disk quota exceeded"); without a quota nbpool can only measure
# every Pool.disk_check_interval and end a container after the fact.
#
# The file is sparse: it takes from the host only what the engine writes
# (deleted files are given back: btrfs discards to the loop device), so its
# size is a ceiling. nbpool's free-space check (Pool.min_free_disk) looks at
# the host filesystem under the file too, so starts stop before the host fills.
# An existing FILE is never formatted again: it holds the engine's images and
# containers; `setup` only mounts it.
set -euo pipefail

MIN_SIZE_GIB=16  # the notebook image, the base image, a rebuild's layers, and Pool.min_free_disk (5G)

say() { printf 'engine: %s\n' "$*"; }
die() { printf 'engine: ERROR: %s\n' "$*" >&2; exit 1; }

# The nearest existing directory of $1 (the data root may not exist yet).
existing() {
    local d=$1
    while [ ! -d "$d" ]; do d=$(dirname "$d"); done
    echo "$d"
}

quota() {
    local dir fs opts
    dir=$(existing "$1")
    fs=$(stat -f -c %T "$dir")
    case "$fs" in
        btrfs) echo btrfs ;;
        xfs)
            # overlay2's quota needs project quotas on the mount: pquota/prjquota in its options.
            opts=$(findmnt -n -o OPTIONS --target "$dir" 2>/dev/null || true)
            case ",$opts," in
                *,prjquota,*|*,pquota,*|*,pqnoenforce,*) echo xfs-pquota ;;
                *) echo "none (xfs without pquota)" ;;
            esac ;;
        ext2/ext3) echo "none (ext4)" ;;  # stat names ext4 so
        *) echo "none ($fs)" ;;
    esac
}

size() {
    local dir free_gib size_gib
    dir=$(existing "$1")
    free_gib=$(( $(df --output=avail -B1 "$dir" | tail -n1) / 1024 / 1024 / 1024 ))
    size_gib=$(( free_gib / 2 ))
    [ "$size_gib" -ge "$MIN_SIZE_GIB" ] || size_gib=$MIN_SIZE_GIB
    # Keep 4G of the host's own: a sparse file larger than what the host can hold fails the engine
    # with I/O errors once the host is full, instead of 'No space left' to one container.
    if [ $(( size_gib + 4 )) -gt "$free_gib" ]; then
        die "only ${free_gib}G free in $dir: too little for a ${MIN_SIZE_GIB}G btrfs data root.
  Free some space, or set NBPOOL_ENGINE_DISK_FILE to a file on a larger disk, or
  NBPOOL_ENGINE_QUOTA=0 to run the engine without a disk quota (nbpool's watchdog then measures)."
    fi
    echo "${size_gib}G"
}

need_btrfs_tools() {
    command -v mkfs.btrfs >/dev/null 2>&1 && command -v btrfs >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || die "mkfs.btrfs is missing; install your distribution's btrfs-progs."
    say "installing Debian's btrfs-progs (first run only)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends btrfs-progs >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends btrfs-progs >/dev/null; } \
        || die "apt-get install btrfs-progs failed (see the messages above)."
}

setup() {
    local file=$1 mnt=$2 want=$3
    [[ "$want" =~ ^[0-9]+[KMGT]?$ ]] || die "size '$want' is not a size like 200G (NBPOOL_ENGINE_DISK)."
    grep -qw btrfs /proc/filesystems || modprobe btrfs 2>/dev/null || grep -qw btrfs /proc/filesystems \
        || die "this kernel has no btrfs (not in /proc/filesystems, and 'modprobe btrfs' failed)."
    need_btrfs_tools
    if mountpoint -q "$mnt"; then
        [ "$(stat -f -c %T "$mnt")" = btrfs ] || die "$mnt is mounted, but not as btrfs: not touching it."
        say "btrfs data root $mnt is mounted already ($(findmnt -n -o SOURCE --mountpoint "$mnt"))."
    else
        if [ ! -e "$file" ]; then
            mkdir -p "$(dirname "$file")"
            # Created empty, sized (sparse) and formatted in one go; a half-made file is removed.
            truncate -s "$want" "$file.new"
            mkfs.btrfs -q -L nbpool-engine "$file.new" >/dev/null || { rm -f "$file.new"; die "mkfs.btrfs $file failed."; }
            mv "$file.new" "$file"
            say "created $file: a sparse $want btrfs file (it takes from the host only what the engine writes)."
        fi
        mkdir -p "$mnt"
        mount -o loop "$file" "$mnt" || die "cannot mount $file on $mnt (loop devices: is /dev/loop-control there?)."
        say "mounted $file on $mnt ($(findmnt -n -o SOURCE --mountpoint "$mnt"))."
    fi
    if ! btrfs qgroup show "$mnt" >/dev/null 2>&1; then
        btrfs quota enable "$mnt" || die "btrfs quota enable $mnt failed."
        say "enabled btrfs quota groups on $mnt."
    fi
    # While the quota groups are marked inconsistent the kernel enforces no limit at all, until a rescan
    # (seen here after quota groups were turned on under a working engine: every container could write
    # past its limit). So: rescan, and wait for it, before dockerd starts. Recent kernels also mark them
    # inconsistent when a subvolume whose tree has drop_subtree_threshold levels or more is deleted (3 on
    # this 6.18 kernel; images are big trees); 8, the most, makes the kernel count every deletion. Kept
    # until unmounted, so set at every start. (nbpool's watchdog takes over while they are inconsistent.)
    local sys
    sys=/sys/fs/btrfs/$(findmnt -n -o UUID --mountpoint "$mnt")/qgroups
    if [ -w "$sys/drop_subtree_threshold" ]; then
        echo 8 > "$sys/drop_subtree_threshold"
    fi
    if [ "$(cat "$sys/inconsistent" 2>/dev/null || echo 0)" = 1 ]; then
        say "rescanning the quota groups of $mnt (their limits hold again once it ends)..."
        btrfs quota rescan -w "$mnt" >/dev/null || die "btrfs quota rescan $mnt failed."
    fi
}

case "${1:-}" in
    tools) need_btrfs_tools ;;
    quota) quota "${2:?quota needs a directory}" ;;
    size) size "${2:?size needs a directory}" ;;
    setup) setup "${2:?setup needs FILE MOUNT SIZE}" "${3:?setup needs FILE MOUNT SIZE}" "${4:?setup needs FILE MOUNT SIZE}" ;;
    *) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
