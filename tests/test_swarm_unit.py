"""The Swarm backend's placement and task reading, on data shaped as the manager answers.

The real cluster (tests/test_swarm.py) shows the whole path; these pin the
rules a real run reaches only by luck: which node the next container goes to,
and what each state of a task and its node means to the pool.
"""

from __future__ import annotations

import pytest

from spawner.engines.base import GONE, RUNNING, NoRoom
from spawner.engines.swarm_cluster import Node, Probe, Snapshot, place, published_port, service_name, task_status

GIB = 2**30
IMAGE = "nbpool/notebook:latest"


def node(name: str, *, state="ready", availability="active", memory=8 * GIB, reserved=0, ours=0) -> Node:
    return Node(id=f"id-{name}", hostname=name, addr=f"10.0.0.{name[-1]}", state=state, availability=availability,
                role="worker", memory=memory, cpus=4 * 10**9, reserved_memory=reserved, ours=ours)


def cluster(*nodes: Node, image_on=None) -> tuple[Snapshot, dict]:
    snap = Snapshot(taken=0, nodes={n.id: n for n in nodes})
    probes = {(n.id, IMAGE): Probe(state="ready") for n in nodes if image_on is None or n.hostname in image_on}
    return snap, probes


def test_the_next_container_goes_to_the_node_with_fewest_of_ours():
    snap, probes = cluster(node("n1", ours=3), node("n2", ours=1), node("n3", ours=2))
    assert place(snap, probes, [], IMAGE, GIB, 10**8).hostname == "n2"
    # Containers being placed right now count too, so a burst spreads instead of piling on one node.
    placing = [("id-n2", GIB, 10**8), ("id-n2", GIB, 10**8)]
    assert place(snap, probes, placing, IMAGE, GIB, 10**8).hostname == "n3"


def test_no_container_goes_where_it_cannot_run():
    snap, probes = cluster(node("n1", state="down"), node("n2", availability="pause"),
                           node("n3", availability="drain"), node("n4", reserved=7 * GIB + 1),
                           node("n5"), image_on={"n1", "n2", "n3", "n4"})
    with pytest.raises(NoRoom) as refused:
        place(snap, probes, [], IMAGE, GIB, 10**8)
    said = str(refused.value)
    for words in ("n1 is down", "n2 is pause", "n3 is drain", "n4 full", "n5: image unknown"):
        assert words in said
    probes[("id-n5", IMAGE)] = Probe(state="ready")  # the probe found the image there
    assert place(snap, probes, [], IMAGE, GIB, 10**8).hostname == "n5"


def test_no_container_goes_to_a_node_its_agent_does_not_guard():
    snap, probes = cluster(node("n1"), node("n2", ours=5))
    problems = {"id-n1": "nbpool's agent does not answer (ConnectTimeout)", "id-n2": ""}
    assert place(snap, probes, [], IMAGE, GIB, 10**8, refused=problems.get).hostname == "n2"
    problems["id-n2"] = "1 containers run without no-new-privileges"
    with pytest.raises(NoRoom, match=r"n1: nbpool's agent does not answer.*n2: 1 containers run without"):
        place(snap, probes, [], IMAGE, GIB, 10**8, refused=problems.get)


def test_a_node_is_full_by_reservations_including_those_being_placed():
    snap, probes = cluster(node("n1", memory=4 * GIB, reserved=2 * GIB))
    assert place(snap, probes, [("id-n1", GIB, 0)], IMAGE, GIB, 0).hostname == "n1"  # 3 of 4 GiB then
    with pytest.raises(NoRoom, match="n1 full"):
        place(snap, probes, [("id-n1", GIB, 0), ("id-n1", GIB, 0)], IMAGE, GIB, 0)


def task(state: str, node_id: str = "id-n1", desired: str = "running", ports=((8888, 30001),)) -> dict:
    return {"NodeID": node_id, "DesiredState": desired,
            "Status": {"State": state, "Message": state, "Err": "task: non-zero exit (1)" if state == "failed" else "",
                       "PortStatus": {"Ports": [{"TargetPort": t, "PublishedPort": p} for t, p in ports]}}}


def test_what_a_task_means_to_the_pool():
    nodes = {n.id: n for n in (node("n1"), node("n2", state="down"), node("n3", availability="drain"))}
    assert task_status(task("running"), nodes)[0] == RUNNING
    assert task_status(task("preparing"), nodes)[0] == "starting"
    assert task_status(None, nodes)[0] == "starting"
    state, why, _ = task_status(task("running", "id-n2"), nodes)
    assert state == GONE and why == "its machine (n2) stopped answering"  # Swarm still says running
    state, why, _ = task_status(task("running", "id-n3", desired="shutdown"), nodes)
    assert state == GONE and "Swarm is stopping it (n3 is drain)" == why
    state, why, _ = task_status(task("failed"), nodes)
    assert state == GONE and why == ""  # its own end: the pool says "it stopped (exit code …)"
    assert task_status(task("running", "id-gone"), nodes)[1] == "its machine left the cluster"
    assert published_port(task("running")) == 30001 and published_port(task("running", ports=())) is None


def test_service_names_are_what_swarm_accepts():
    assert service_name("nbpool.workshop_1-ab12cd--a1796-0f") == "nbpool-workshop-1-ab12cd--a1796-0f"
    assert len(service_name("x" * 100)) == 63


def test_a_node_is_guarded_only_with_its_firewall_and_no_new_privileges_everywhere():
    """What each node's agent answered decides whether it gets containers (spawner.engines.swarm_agents)."""
    import asyncio

    from spawner.engines.swarm_agents import NodeAgents

    answers = {
        "10.0.0.1": {"firewall": "ok", "containers": {"s1": {"cid": "a", "no_new_privileges": True}}},
        "10.0.0.2": {"firewall": "docker0: iptables failed", "containers": {}},
        "10.0.0.3": {"firewall": "ok", "containers": {"s3": {"cid": "c", "no_new_privileges": False}}},
    }

    class Backend:
        async def _call(self, what, fn, *args):
            return fn(*args)

    agents = NodeAgents(Backend())
    agents._ask_sync = lambda address: answers[address] if address in answers else (_ for _ in ()).throw(
        OSError("refused"))
    snap, _ = cluster(node("n1"), node("n2"), node("n3"), node("n4"))
    asyncio.run(agents.ask(snap))
    assert agents.problem("id-n1") == ""
    assert "firewall is not in place: docker0: iptables failed" in agents.problem("id-n2")
    assert "1 containers run without no-new-privileges" in agents.problem("id-n3")
    assert "agent does not answer (OSError)" in agents.problem("id-n4")
    assert agents.reading("s1").no_new_privileges is True and agents.reading("nope") is None
