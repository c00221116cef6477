"""The Docker network attendees' containers share: a bridge with inter-container traffic off, made when missing,
refused when someone else made it otherwise."""

from __future__ import annotations

import docker

from .base import BackendError
from .firewall import bridge_name

ICC = "com.docker.network.bridge.enable_icc"


def ensure_network(client: docker.DockerClient, name: str, log) -> str:
    """Create network ``name`` if missing (refuse one that lets containers reach each other); return its
    Linux bridge's name."""
    # The engine's name filter matches substrings ("nbpool" finds "nbpool-tests"): compare exactly.
    for net in client.networks.list(names=[name]):
        if net.name == name:
            check_network(name, net.attrs)
            return bridge_name(net.attrs)
    net = client.networks.create(name, driver="bridge", check_duplicate=True, options={ICC: "false"},
                                 labels={"org.nbpool.network": "1"})
    net.reload()
    log.info("created Docker network %s (inter-container traffic disabled)", name)
    return bridge_name(net.attrs)


def check_network(name: str, attrs: dict) -> None:
    """An existing network must keep attendees apart: a bridge with inter-container traffic off.

    Refused, not recreated: nbpool always creates it so, so another one was made by someone else (and
    may serve them), and one with containers on it cannot be removed anyway. The operator decides.
    """
    driver = attrs.get("Driver")
    icc = (attrs.get("Options") or {}).get(ICC, "true")  # Docker's default: on
    if driver == "bridge" and icc == "false":
        return
    what = f"a {driver} network" if driver != "bridge" else f"a bridge with {ICC}={icc}"
    attached = len(attrs.get("Containers") or {})
    raise BackendError(
        f"Docker network {name!r} exists, but is {what}: attendees' containers on it could reach each other. "
        f"nbpool makes it right when it is missing: remove it with 'docker network rm {name}'"
        + (f" once none of the {attached} containers on it needs it" if attached else "")
        + ", or set DockerBackend.network_name to another name.")
