"""The Docker network that keeps attendees apart (issue 24): an existing one is used only as nbpool makes it.

nbpool creates network_name as a bridge with inter-container traffic off; a network of that name that
someone else made may let attendees' containers reach each other, so the backend refuses to start on it.
"""

from __future__ import annotations

import secrets

import pytest

from spawner.engines.base import BackendError
from spawner.engines.docker import DockerBackend
from spawner.engines.docker_network import check_network
from spawner.engines.firewall import ContainerFirewall

ICC = "com.docker.network.bridge.enable_icc"


def backend_for(network: str) -> DockerBackend:
    # Egress 'open': this is about the network, not the host's firewall rules.
    return DockerBackend(network_name=network, firewall=ContainerFirewall(egress="open"))


@pytest.fixture
def network(docker_client):
    """A network name of this test's own; the network is removed afterwards, whoever made it."""
    name = f"nbpool-net-test-{secrets.token_hex(3)}"
    yield name
    for net in docker_client.networks.list(names=[name]):
        if net.name == name:
            net.remove()


def test_the_refusal_names_the_network_the_fix_and_the_containers_on_it():
    backend = backend_for("workshop-net")
    attrs = {"Name": "workshop-net", "Driver": "bridge", "Options": {}, "Containers": {"a": {}, "b": {}}}
    with pytest.raises(BackendError, match="once none of the 2 containers on it needs it"):
        check_network(backend.network_name, attrs)
    with pytest.raises(BackendError, match="'workshop-net' exists, but is a macvlan network"):
        check_network(backend.network_name, {**attrs, "Driver": "macvlan", "Options": {ICC: "false"}})
    check_network(backend.network_name, {**attrs, "Options": {ICC: "false"}})  # as nbpool makes it: used


@pytest.mark.docker
async def test_an_existing_network_letting_containers_talk_is_refused(docker_client, network):
    docker_client.networks.create(network, driver="bridge")  # Docker's default: inter-container traffic on
    backend = backend_for(network)
    try:
        with pytest.raises(BackendError) as refused:
            await backend.setup()
        message = str(refused.value)
        assert f"Docker network '{network}' exists" in message
        assert "enable_icc=true" in message and f"docker network rm {network}" in message
        assert docker_client.networks.get(network).attrs["Options"] == {}  # left as it was: not nbpool's to fix
    finally:
        await backend.close()

    docker_client.networks.get(network).remove()
    docker_client.networks.create(network, driver="bridge", options={ICC: "false"})
    backend = backend_for(network)
    try:
        await backend.setup()  # one made as nbpool makes it is used
        assert backend.bridge
    finally:
        await backend.close()
