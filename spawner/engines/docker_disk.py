"""How a Docker engine bounds each container's disk, and how much room its disk has (issue 24).

Three cases, told apart from ``docker info``:

- the btrfs storage driver: quota groups enforce ``--storage-opt size``. The limit counts everything the
  container's subvolume *references*, and that subvolume is a snapshot of the image, so the quota is
  disk_limit plus the image's size plus what btrfs itself takes for the image's files (4.6 % for
  nbpool/notebook: 1,303 MB referenced for 1,245 MB of layers);
- overlay2 on xfs mounted with pquota: project quotas on the writable layer alone, so the quota is
  disk_limit (without pquota the engine refuses the option, and the pool's watchdog takes over);
- anything else (overlay2 on ext4, ...): no quota; the pool's watchdog measures every
  Pool.disk_check_interval and ends a container over its limit after the fact.

``make engine`` (arch-base/engine.sh) gives an engine it starts a btrfs data root where the host offers
no quota.
"""

from __future__ import annotations

import glob
import os

from ..traits import format_memory

BTRFS = "btrfs"
XFS = "overlay2 on xfs"
NO_QUOTA = ""

# Room for btrfs's own overhead on the image's files, as a share of the image's size (measured 4.6 % for
# nbpool/notebook, whose many small Python files cost most of it), and at least this many bytes for
# small images. Too little and the engine refuses the container ("disk quota exceeded", see
# EngineQuota.refused, which doubles it); the rest is room an attendee gets beyond disk_limit.
BTRFS_OVERHEAD = 0.06
BTRFS_OVERHEAD_MAX = 0.5
BTRFS_OVERHEAD_MIN_BYTES = 32 * 2**20


def quota_kind(info: dict) -> str:
    """What enforces a per-container disk quota on the engine ``info`` describes (BTRFS, XFS or NO_QUOTA)."""
    driver = info.get("Driver")
    status = dict(info.get("DriverStatus") or [])
    if driver == "btrfs":
        return BTRFS
    if driver == "overlay2" and status.get("Backing Filesystem") == "xfs":
        return XFS  # with pquota: checked when the engine refuses a start
    return NO_QUOTA


def storage_words(info: dict) -> str:
    """The engine's storage in words for the log, e.g. 'overlay2 on extfs'."""
    backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem")
    return f"{info.get('Driver') or '?'}" + (f" on {backing}" if backing else "")


def btrfs_extra(image_size: int, overhead: float) -> int:
    """Bytes a btrfs quota must allow beyond disk_limit for a container of an image of ``image_size`` bytes."""
    return image_size + max(int(image_size * overhead), BTRFS_OVERHEAD_MIN_BYTES)


def _mount_source(path: str) -> str:
    """The device of the mount that holds ``path`` (from /proc/self/mountinfo), or ''."""
    best, source = "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                point = fields[4].replace("\\040", " ")
                under = path == point or path.startswith(point.rstrip("/") + "/")
                if under and len(point) >= len(best):
                    best, source = point, fields[fields.index("-") + 2]
    except (OSError, ValueError, IndexError):
        return ""
    return source


def qgroups_inconsistent(path: str) -> bool | None:
    """Whether the btrfs holding ``path`` has its quota groups marked inconsistent (None: cannot tell).

    The kernel then enforces no limit until a rescan. Recent kernels mark them so when a subvolume with a
    tall tree is deleted (a removed container) unless its drop_subtree_threshold is raised, as engine.sh does.
    """
    name = os.path.basename(_mount_source(os.path.realpath(path)))
    for flag in glob.glob(f"/sys/fs/btrfs/*/devices/{glob.escape(name)}") if name else []:
        try:
            with open(os.path.join(os.path.dirname(os.path.dirname(flag)), "qgroups", "inconsistent")) as f:
                return f.read().strip() == "1"
        except OSError:
            return None
    return None


def backing_free(path: str) -> int | None:
    """Bytes free on the host filesystem under ``path``'s loop-mounted file, when ``path`` is on a loop device.

    A sparse file (engine.sh's btrfs data root) can promise more than its host filesystem holds: once
    the host is full, writes fail with I/O errors. The pool's free-space check takes the smaller of both.
    """
    source = _mount_source(os.path.realpath(path))
    name = os.path.basename(source)
    if not name.startswith("loop"):
        return None
    try:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            backing = f.read().strip()
        st = os.statvfs(os.path.dirname(backing))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class EngineQuota:
    """What enforces disk_limit on one engine, and what that means for a container's start.

    Learnt from ``docker info`` at setup (``learn``); the backend and each workshop's variant of it hold the
    same one, since they share the engine. It changes when the engine refuses a quota (``refused``) or its btrfs
    quota groups lose count (``enforced``).
    """

    def __init__(self, log) -> None:
        self.log = log
        self.kind = NO_QUOTA  # BTRFS, XFS or NO_QUOTA
        self.btrfs_overhead = BTRFS_OVERHEAD  # raised when the engine refuses a quota as too small
        self.lost = False  # btrfs quota groups found inconsistent (no limit enforced) at the last look
        self.local = False  # the engine runs on this machine (its file systems can be looked at)
        self.info: dict = {}  # `docker info`

    def learn(self, info: dict, local: bool, disk_limit: int) -> None:
        """The engine's storage, from ``docker info``; says what will enforce ``disk_limit``."""
        self.info, self.kind, self.local = info, quota_kind(info), local
        if not disk_limit:
            return
        limit = format_memory(disk_limit)
        if self.kind:
            self.log.info("disk limit %s per container: enforced by the engine (%s quota): writes past it fail",
                          limit, self.kind)
        else:
            self.log.info("disk limit %s per container: measured by the pool's watchdog every "
                          "Pool.disk_check_interval, as the engine's storage (%s) has no per-container quota; "
                          "an engine started by 'make engine' has one (docs/explanation/security.md: disk and logs)",
                          limit, storage_words(info))

    def enforced(self) -> bool:
        """Whether the engine itself stops a container's writes at disk_limit now (no watchdog needed)."""
        if self.kind != BTRFS or not self.local:
            return bool(self.kind)  # a remote engine's file system cannot be looked at from here
        lost = bool(qgroups_inconsistent(self.info.get("DockerRootDir") or "/"))
        if lost != self.lost:
            self.lost = lost
            if lost:
                self.log.warning("the btrfs quota groups of the engine's data root are inconsistent: it enforces "
                                 "no disk limit until they are rescanned ('make engine' does, as does 'btrfs quota "
                                 "rescan <its mount>'); the pool's watchdog measures meanwhile")
            else:
                self.log.info("the btrfs quota groups of the engine's data root are consistent again: the engine "
                              "enforces disk limits")
        return not lost

    def counts_image(self, disk_limit: int) -> bool:
        """Whether a container's quota must also hold its image's files (btrfs: a snapshot of the image)."""
        return bool(disk_limit) and self.kind == BTRFS

    def extra(self, image_size: int) -> int:
        """Bytes a container's quota allows beyond disk_limit for an image of ``image_size`` bytes."""
        return btrfs_extra(image_size, self.btrfs_overhead)

    def refused(self, message: str, image: str) -> bool:
        """The engine refused a container's disk quota: adapt and return True (start again), or False."""
        if self.kind == BTRFS and "quota exceeded" in message and self.btrfs_overhead < BTRFS_OVERHEAD_MAX:
            # The image takes more room on btrfs than thought: a limit below what it already uses.
            self.btrfs_overhead *= 2
            self.log.warning("the engine refused a disk quota below what %s already takes on btrfs; allowing "
                             "%.0f%% of its size for btrfs's overhead from now on", image, self.btrfs_overhead * 100)
            return True
        if self.kind and any(word in message for word in ("storage-opt", "storage size", "quota", "qgroup")):
            # xfs without the pquota mount option, or btrfs with its quota groups off (Docker 20.10 turns
            # them off when it stops with no container running, and never on again): no engine quota after
            # all; the watchdog measures.
            hint = (f"; 'make engine' (or 'btrfs quota enable {self.info.get('DockerRootDir')}') turns "
                    "the quota groups on again, for containers started after it" if "qgroup" in message else "")
            self.log.warning("the engine refused a disk quota (%s): the disk watchdog enforces disk_limit%s",
                             message, hint)
            self.kind = NO_QUOTA
            return True
        return False
