"""A container's disk bounded by the engine (issue 24): which engines bound it, what nbpool asks of them, and
the watchdog only where none does. A real container stopped at its limit on a btrfs data root (as
`NBPOOL_ENGINE_QUOTA=1 make engine` makes one) is tests/test_engine_script.py's, on an engine of its own.
"""

from __future__ import annotations

import secrets

import pytest

from proxy.routes import RouteTable
from spawner.engines.base import Endpoint
from spawner.engines.docker import DockerBackend
from spawner.engines.docker_disk import BTRFS, BTRFS_OVERHEAD, NO_QUOTA, XFS, btrfs_extra, quota_kind
from spawner.engines.firewall import ContainerFirewall
from spawner.pool import Pool
from spawner.secret import ServerSecret
from tests.fakes import FakeBackend
from tests.resources import echo

MIB = 2**20


def backend_for(network: str, **settings) -> DockerBackend:
    # Egress 'open': these tests are about disks and networks, not the host's firewall rules.
    return DockerBackend(network_name=network, firewall=ContainerFirewall(egress="open"), **settings)


@pytest.fixture
def network(docker_client):
    """A network name of this test's own; the network is removed afterwards, whoever made it."""
    name = f"nbpool-quota-test-{secrets.token_hex(3)}"
    yield name
    for net in docker_client.networks.list(names=[name]):
        if net.name == name:
            net.remove()


# --- which engines have a quota, and what it must allow ---------------------------------------------------

@pytest.mark.parametrize("info, kind", [
    ({"Driver": "btrfs", "DriverStatus": [["Build Version", "Btrfs v6.2"]]}, BTRFS),
    ({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "xfs"]]}, XFS),
    ({"Driver": "overlay2", "DriverStatus": [["Backing Filesystem", "extfs"]]}, NO_QUOTA),
    ({"Driver": "vfs"}, NO_QUOTA),
])
def test_the_quota_is_told_from_the_engines_storage(info, kind):
    assert quota_kind(info) == kind


def test_a_btrfs_quota_counts_the_image_a_container_is_a_snapshot_of():
    backend = DockerBackend(disk_limit="50M")
    backend.quota.kind = BTRFS
    image = 1_245_432_180  # nbpool/notebook: 1,303 MB referenced on btrfs (4.6 % more)
    extra = btrfs_extra(image, BTRFS_OVERHEAD)
    assert 1.046 * image < extra < 1.07 * image
    kwargs = backend.spec.create_kwargs("p", "c", "n", "t", "/", {}, extra)
    assert kwargs["storage_opt"] == {"size": str(50 * MIB + extra)}
    assert btrfs_extra(1000, BTRFS_OVERHEAD) == 1000 + 32 * MIB  # a small image: metadata dominates

    backend.quota.kind = NO_QUOTA
    assert backend.disk_quota is False and "storage_opt" not in backend.spec.create_kwargs("p", "c", "n", "t", "/", {})


def test_a_refused_quota_first_allows_more_for_btrfs_then_falls_back_to_the_watchdog():
    backend = DockerBackend(disk_limit="50M")
    twin = backend.variant(backend.config)
    backend.quota.kind = BTRFS
    assert twin.disk_quota  # a workshop's variant shares its engine's quota
    assert twin.quota.refused("Failed to limit qgroup for &{}: disk quota exceeded", twin.image)
    assert backend.quota.btrfs_overhead == 2 * BTRFS_OVERHEAD and backend.disk_quota
    while backend.quota.btrfs_overhead < 0.5:
        assert backend.quota.refused("disk quota exceeded", backend.image)
    assert backend.quota.refused("disk quota exceeded", backend.image)
    assert not backend.disk_quota and not twin.disk_quota
    backend.quota.kind = XFS
    assert backend.quota.refused("--storage-opt is supported only for overlay over xfs with 'pquota' mount option",
                                 backend.image)
    assert not backend.disk_quota
    backend.quota.kind = BTRFS  # its quota groups off: Docker 20.10 turns them off when it stops with none running
    assert backend.quota.refused("Failed to limit qgroup for &{}: transport endpoint is not connected", backend.image)
    assert not backend.disk_quota
    assert not backend.quota.refused("no such image", backend.image)


class MeasuredBackend(FakeBackend):
    """A fake engine that counts the watchdog's measurements."""

    measured = 0

    async def disk_usage(self, pool):
        self.measured += 1
        return await super().disk_usage(pool)


def test_btrfs_quota_groups_that_lost_count_enforce_nothing_so_the_watchdog_measures(monkeypatch):
    import spawner.engines.docker_disk as docker_disk

    backend = DockerBackend(disk_limit="2G")
    backend.quota.kind, backend.quota.local = BTRFS, True
    backend.quota.info = {"DockerRootDir": "/var/lib/nbpool-docker"}
    seen = []
    monkeypatch.setattr(docker_disk, "qgroups_inconsistent", lambda path: seen.append(path) or True)
    assert backend.disk_quota is False and seen == ["/var/lib/nbpool-docker"]
    assert "storage_opt" in backend.spec.create_kwargs("p", "c", "n", "t", "/", {})  # the limit, for when it counts
    monkeypatch.setattr(docker_disk, "qgroups_inconsistent", lambda path: False)
    assert backend.disk_quota is True


async def test_the_watchdog_measures_nothing_where_the_engine_enforces_the_quota():
    server = await echo.start()
    backend = MeasuredBackend(Endpoint("127.0.0.1", server.port))
    backend.disk_limit = 2 * 2**30
    backend.disk_quota = True
    pool = Pool(backend=backend, routes=RouteTable(), secret=ServerSecret(b"k" * 32), warm=1, max_containers=3,
                start_timeout=5, cull_interval=3600, reconcile_interval=3600, disk_check_interval=3600)
    try:
        await pool.start()
        big = await pool.acquire()
        backend.sizes[big.engine_id] = 3 * 2**30  # cannot happen under a quota; were it so, the engine stops it
        assert await pool.check_disk() == 0
        assert big.cid in pool.slots and backend.measured == 0
        backend.disk_quota = False
        assert await pool.check_disk() == 1 and backend.measured == 1  # without a quota the watchdog ends it
    finally:
        await pool.stop()
        await server.stop()
