"""arch-base/engine.sh and engine-btrfs.sh, run for real where they cannot touch the machine's engine.

Each test runs the scripts inside private namespaces (unshare): mounts, and for engine.sh also process
ids, /run and the network, so the dockerd it starts there, its loop-mounted btrfs file and its bridge
are invisible to the host's engine and vanish with the namespace. They need root, unshare, loop devices
and btrfs in the kernel; without them they skip outside CI and fail under CI=true (CI's machine is the
kind `make engine` must give a quota on).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from spawner.engines.docker import DockerBackend
from spawner.engines.docker_disk import BTRFS, BTRFS_OVERHEAD, btrfs_extra
from tests.conftest import UNDER_CI
from tests.dockertools import BASE_IMAGE

ROOT = Path(__file__).resolve().parent.parent
HELPER = ROOT / "arch-base" / "engine-btrfs.sh"
ENGINE = ROOT / "arch-base" / "engine.sh"

pytestmark = pytest.mark.slow


def missing() -> str:
    """Why the scripts cannot run here for real ('' when they can)."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("unshare", "mkfs.btrfs", "btrfs", "dockerd"):
        if not shutil.which(tool):
            return f"no {tool} ('make test' installs btrfs-progs, 'make engine' docker.io)"
    if "btrfs" not in Path("/proc/filesystems").read_text():
        return "no btrfs in this kernel"
    if not Path("/dev/loop-control").exists():
        return "no loop devices"
    return ""


@pytest.fixture
def sandbox(tmp_path):
    why = missing()
    if why:
        if UNDER_CI:
            pytest.fail(f"cannot run engine.sh's btrfs steps: {why} -- under CI=true they must run", pytrace=False)
        pytest.skip(f"cannot run engine.sh's btrfs steps: {why}")
    yield tmp_path
    # Every mount lived in the namespace and went with it; the sparse file is removed at once (pytest keeps
    # the last runs' temporary folders, and this one may hold a few hundred MB).
    for f in tmp_path.glob("*.btrfs"):
        f.unlink()
    assert subprocess.run(["losetup", "-j", str(tmp_path / "engine.btrfs")], capture_output=True,
                          text=True).stdout == ""  # no loop device left attached to it


def run(script: str, *, env: dict[str, str], namespaces: list[str], timeout: float = 240) -> str:
    """``script`` in bash in new namespaces; returns its output, fails the test on a non-zero exit."""
    done = subprocess.run(["unshare", *namespaces, "bash", "-euo", "pipefail", "-c", script],
                          capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in {**os.environ, **env}.items() if k != "DOCKER_HOST"})
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def test_the_helper_says_which_filesystems_give_docker_a_quota(tmp_path):
    out = subprocess.run(["bash", str(HELPER), "quota", str(tmp_path / "not" / "yet")], capture_output=True,
                         text=True, check=True).stdout.strip()
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout.strip()
    assert out == {"btrfs": "btrfs", "ext2/ext3": "none (ext4)"}.get(fs, out)
    if fs == "ext2/ext3":
        assert out == "none (ext4)"  # the case engine.sh gives a btrfs data root
    size = subprocess.run(["bash", str(HELPER), "size", str(tmp_path)], capture_output=True, text=True)
    assert (size.returncode == 0 and size.stdout.strip().endswith("G")) or "too little" in size.stderr
    bad = subprocess.run(["bash", str(HELPER), "setup", "/nonexistent/f", "/nonexistent/m", "lots"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "'lots' is not a size like 200G" in bad.stderr


def test_the_btrfs_data_root_is_made_once_mounted_again_and_enforces_quota_groups(sandbox):
    file, mnt = sandbox / "engine.btrfs", sandbox / "root"
    out = run(f"""
        setup() {{ bash {HELPER} setup {file} {mnt} 1G; }}
        setup
        echo kept > {mnt}/marker
        setup                                     # a second run: mounted already, nothing made
        umount {mnt}                              # as after a reboot
        setup                                     # mounted again, not formatted again
        cat {mnt}/marker
        echo "threshold $(cat /sys/fs/btrfs/$(findmnt -n -o UUID --mountpoint {mnt})/qgroups/drop_subtree_threshold)"
        # What Docker's btrfs driver relies on: a subvolume's quota group stops writes at its limit.
        btrfs subvolume create {mnt}/c >/dev/null
        btrfs qgroup limit 20M {mnt}/c
        if dd if=/dev/zero of={mnt}/c/big bs=1M count=50 conv=fsync 2>{sandbox}/dd.err; then exit 3; fi
        echo "written $(stat -c %s {mnt}/c/big)"; cat {sandbox}/dd.err | head -1
        """, env={}, namespaces=["--mount", "--propagation", "private"])
    assert out.count("created ") == 1 and "sparse 1G btrfs file" in out
    assert "is mounted already" in out and out.count(f"mounted {file} on {mnt}") == 2
    assert out.count("enabled btrfs quota groups") == 1  # quota groups stay on across a remount
    assert "\nkept\n" in out
    # Removing a container must not lift every limit (kernels that mark quota groups inconsistent when a tall
    # subvolume is deleted, unless its threshold is the most, 8); where the knob exists it is set.
    assert "threshold 8" in out or "threshold \n" in out
    written = int(out.split("written ")[1].split()[0])
    assert written <= 20 * 2**20 and "Disk quota exceeded" in out
    assert os.stat(file).st_blocks * 512 < 200 * 2**20  # sparse: the host holds what was written, not 1G


@pytest.mark.docker
def test_engine_sh_gives_a_new_engine_a_btrfs_data_root_and_keeps_it(sandbox, docker_client):
    file, root, log = sandbox / "engine.btrfs", sandbox / "docker", sandbox / "dockerd.log"
    env = {"NBPOOL_ENGINE_DISK_FILE": str(file), "NBPOOL_ENGINE_ROOT": str(root), "NBPOOL_ENGINE_DISK": "16G",
           "NBPOOL_DOCKERD_LOG": str(log), "NBPOOL_ENGINE_TIMEOUT": "90", "NBPOOL_ENGINE_QUOTA": "1"}
    # A container of the base image on that engine, with the disk quota nbpool asks for a 50M disk_limit.
    base = sandbox / "base.tar"
    with open(base, "wb") as out:
        for chunk in docker_client.images.get(BASE_IMAGE).save(named=True):
            out.write(chunk)
    backend = DockerBackend(disk_limit="50M")
    backend.quota.kind = BTRFS
    size = backend.spec.create_kwargs("p", "c", "n", "t", "/", {}, btrfs_extra(
        docker_client.images.get(BASE_IMAGE).attrs["Size"], BTRFS_OVERHEAD))["storage_opt"]["size"]
    # A private /run hides the host's engine (socket, pid file, containerd); a private network keeps the
    # sandbox's bridge and iptables rules away from the host's; a private pid namespace hides its dockerd.
    out = run(f"""
        mount -t tmpfs tmpfs /run
        info() {{
            docker info --format 'root={{{{.DockerRootDir}}}} driver={{{{.Driver}}}}'
            btrfs qgroup show {root} >/dev/null && echo "quota groups on"
        }}
        stop() {{
            pid=$(cat /run/docker.pid); kill -TERM "$pid"
            while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
        }}
        echo '--- first'; bash {ENGINE}; info
        docker load -i {base} >/dev/null
        docker run --rm --network none --storage-opt size={size} {BASE_IMAGE} sh -c \
            'dd if=/dev/zero of=/big bs=1M count=200 conv=fsync 2>&1 | grep -v records
             echo "written $(stat -c %s /big)"'
        echo '--- again'; bash {ENGINE}
        echo '--- restart'; bash {ENGINE} --restart; info
        echo '--- reboot'; stop; umount {root}; bash {ENGINE}; info
        stop
        """, env=env, namespaces=["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc", "--net",
                                  "--kill-child"])
    first, again, restart, reboot = (part for part in out.split("--- ")[1:])
    assert "has no per-container quota" in first or "giving the engine a btrfs data root" in first
    assert "sparse 16G btrfs file" in first and "--data-root " + str(root) in first
    assert f"root={root} driver=btrfs" in first and "disk quota per container: yes (btrfs quota groups)" in first
    # The limit holds: the write stops at about disk_limit, with the error the attendee sees.
    written = int(first.split("written ")[1].split()[0])
    assert "Disk quota exceeded" in first and 40 * 2**20 <= written <= 100 * 2**20, first
    assert "already reachable" in again and "yes (btrfs quota groups)" in again
    assert f"--live-restore --data-root {root} --storage-driver btrfs" in restart  # the same arguments
    # Docker 20.10's btrfs driver turns the quota groups off when it stops with no container running (here:
    # none), and never on again: a restart must turn them on before dockerd is back, or creates fail.
    assert f"root={root} driver=btrfs" in restart and "quota groups on" in restart
    assert f"mounted {file} on {root}" in reboot and "created" not in reboot and f"root={root} driver=btrfs" in reboot
    assert "quota groups on" in reboot
