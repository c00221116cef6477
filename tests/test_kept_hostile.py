"""Kept work against hostile input: servers that lie, visitors that take more than their share, restarts
after a reboot. Each test fails without the protection it names.

The attendees' notebook servers are a small real server (tests/resources/hostile_contents.py) that
answers as a container's owner could make Jupyter answer; the keeper saves from it into a real store.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from spawner.contents import ContentsError, listing_cap
from spawner.engines.base import Endpoint
from spawner.keep import Kept, KeptStore, WorkKeeper
from spawner.keep.keeper import AlreadyRestored
from spawner.pool.slot import ASSIGNED, Slot
from spawner.secret import ServerSecret
from tests.fakes import FakeClock
from tests.resources import hostile_contents
from tests.resources.hostile_contents import Home

SECRET = ServerSecret(b"h" * 32)
MODIFIED = "2026-05-01T10:00:00Z"


@pytest.fixture
async def server():
    """(homes, make_slot): make_slot(cid, owner) gives a session whose server serves homes[cid]."""
    homes: dict[str, Home] = {}
    running = await hostile_contents.start(homes=homes)

    def make_slot(cid: str, owner: str = "", files: dict[str, bytes] | None = None) -> Slot:
        homes[cid] = Home(SECRET.token_for(cid), {p: (d, MODIFIED) for p, d in (files or {}).items()})
        return Slot(cid=cid, state=ASSIGNED, generation=0, created=0.0, nonce=f"n{cid}",
                    endpoint=Endpoint("127.0.0.1", running.port), image="img", owner=owner)

    yield homes, make_slot
    await running.stop()


def keeper_for(tmp_path: Path, **settings) -> WorkKeeper:
    keeper = WorkKeeper(secret=SECRET, store=KeptStore(tmp_path / "kept"), wallclock=FakeClock(1e9), **settings)
    keeper._gate = asyncio.Semaphore(4)
    return keeper


# --- a restart after the containers went (a reboot, 'make clean-containers') ---------------------------------

async def test_a_restart_after_the_containers_went_ends_every_session_in_one_go(tmp_path):
    store = KeptStore(tmp_path / "kept")
    for i in range(6):
        kept = Kept(cid=f"c{i:02x}", nonce="n")  # live, as a checkpoint left it
        if i % 2:
            store.write_file(kept.cid, "mine.py", b"x")
            kept.files = {"mine.py": {"size": 1, "modified": MODIFIED, "saved": 1e9}}
        store.save_meta(kept)  # those with nothing made: removed at the restart (this changed the dict)
    keeper = keeper_for(tmp_path)
    await keeper.start(lambda: [SimpleNamespace(slots={}, clock=FakeClock())])  # no container of them is left
    keeper.stop()
    assert sorted(keeper.sessions) == ["c01", "c03", "c05"]
    assert all(k.state == "ended" and "last checkpoint" in k.reason for k in keeper.sessions.values())
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["c01", "c03", "c05"]
    assert keeper.space.total == 3


async def test_an_older_record_without_an_owner_still_loads(tmp_path):
    store = KeptStore(tmp_path / "kept")
    folder = tmp_path / "kept" / "beef"
    folder.mkdir(mode=0o700)
    record = {"cid": "beef", "nonce": "n", "state": "ended", "files": {"a.txt": {"size": 2, "modified": "",
                                                                              "saved": 0}},
              "from_a_newer_version": 1}
    (folder / "kept.json").write_text(json.dumps(record))
    kept = store.load_all()["beef"]
    assert kept.owner == "" and kept.files["a.txt"]["size"] == 2


# --- one network's sessions cannot take the space everyone shares --------------------------------------------

async def test_one_networks_sessions_cannot_take_the_space_another_attendee_needs(server, tmp_path):
    _, make_slot = server
    # A whole IPv6 /64 is one subscriber: three sessions from it (?new=1 thrice), then someone else.
    keeper = keeper_for(tmp_path, max_per_attendee=1000, max_per_network=1000, max_total=1800)
    theirs = [make_slot(f"a{i}", owner=f"2001:db8:1:2::{i + 10}", files={"big.bin": b"a" * 600}) for i in range(3)]
    for slot in theirs:
        await keeper.save(slot, final=True)
    other = make_slot("b0", owner="198.51.100.7", files={"work.ipynb": b"b" * 600})
    kept = await keeper.save(other, final=True)
    assert list(kept.files) == ["work.ipynb"], kept.skipped  # without max_per_network: "space ... is full"

    first, *more = (keeper.sessions[s.cid] for s in theirs)
    assert list(first.files) == ["big.bin"]
    for later in more:
        assert later.files == {} and "kept for one network" in later.skipped["big.bin"]["why"]
    assert "max_per_network" in keeper.problem and "max_total" not in keeper.problem
    # The network is recorded as a keyed digest, never as the address.
    on_disk = (tmp_path / "kept" / "a0" / "kept.json").read_text()
    assert first.owner and first.owner in on_disk and "2001:db8" not in on_disk and first.owner == more[0].owner
    assert kept.owner != first.owner

    await keeper.delete("a0", "its owner deleted it")  # room again for that network
    assert keeper.space.total == 600 and "max_per_network" not in keeper.problem
    assert list((await keeper.save(theirs[1], final=True)).files) == ["big.bin"]


async def test_a_save_never_walks_other_sessions_files(server, tmp_path):
    """The room check keeps running sums: it used to add up every file of every session, for each file."""
    _, make_slot = server

    class Untouchable(dict):
        def _walked(self, *args):
            raise AssertionError("a save walked another session's files")
        values = items = __iter__ = _walked

    keeper = keeper_for(tmp_path, max_total=10**9)
    for i in range(50):
        other = Kept(cid=f"e{i:02x}", nonce="n", state="ended",
                     files={f"f{j}": {"size": 1, "modified": "", "saved": 0} for j in range(100)})
        keeper.sessions[other.cid] = other
        keeper.space.count(other)  # as start() counts what it finds
        other.files = Untouchable(other.files)
    slot = make_slot("d0", files={f"new{j}.txt": b"x" * j for j in range(40)})
    kept = await keeper.save(slot, final=True)
    assert len(kept.files) == 40 and not kept.error
    assert keeper.space.total == 50 * 100 + sum(range(40))


# --- listings and files are bounded before they are read -------------------------------------------------------

async def test_a_listing_that_never_ends_is_cut_off_and_the_rest_is_kept(server, tmp_path):
    homes, make_slot = server
    keeper = keeper_for(tmp_path, max_files=200)
    slot = make_slot("f0", files={"mine.txt": b"mine", "data/x.csv": b"1,2"})
    homes["f0"].endless = {"huge"}
    kept = await keeper.save(slot, final=False)
    assert sorted(kept.files) == ["data/x.csv", "mine.txt"] and not kept.error
    assert "too many files in one folder" in kept.skipped["huge/"]["why"]
    # Cut off at the cap (plus what the sockets' buffers held), not read to the end.
    assert homes["f0"].sent < listing_cap(200) + 8 * 2**20


async def test_the_walk_stops_at_max_files_and_keeps_what_it_could_not_see(server, tmp_path):
    homes, make_slot = server
    keeper = keeper_for(tmp_path, max_files=50)
    slot = make_slot("f1", files={"mine.txt": b"mine"})
    homes["f1"].folders = {"": 1000}  # a thousand empty folders (a listing under the cap): a request each
    kept = await keeper.save(slot, final=False)
    assert list(kept.files) == ["mine.txt"]
    assert homes["f1"].requests <= 50
    assert any("not looked at" in s["why"] for s in kept.skipped.values())
    # A file kept before is not taken for deleted because its folder was not looked at this time.
    homes["f1"].files = {}
    kept = await keeper.save(slot, final=False)
    assert list(kept.files) == ["mine.txt"]


async def test_nonsense_in_a_listing_is_passed_over(server, tmp_path):
    homes, make_slot = server
    keeper = keeper_for(tmp_path)
    slot = make_slot("f2", files={"fine.txt": b"ok"})
    homes["f2"].odd = [5, "x", None, [1], {"name": 3, "path": 4, "type": "file"},
                       {"name": "a", "path": "a", "type": "file", "size": "NaN", "last_modified": {}},
                       {"name": "b", "path": "b" * 5000, "type": "file", "size": 1},
                       {"name": "c", "path": "c", "type": "file", "size": 1e300, "last_modified": "x"}]
    kept = await keeper.save(slot, final=False)
    assert not kept.error and "fine.txt" in kept.files
    assert not any(len(p) > 4096 for p in kept.skipped)


async def test_a_file_listed_small_whose_bytes_never_end_is_cut_off(server, tmp_path):
    homes, make_slot = server
    keeper = keeper_for(tmp_path, max_per_attendee=100_000)
    slot = make_slot("f3")
    homes["f3"].files["fine.txt"] = (b"ok", "2026-04-01T00:00:00Z")  # older: the newer small.txt goes first
    homes["f3"].bottomless = {"small.txt": 10}
    kept = await keeper.save(slot, final=False)
    assert "fine.txt" in kept.files and kept.skipped["small.txt"]["why"] == "too large"
    assert homes["f3"].sent < 8 * 2**20  # read up to what could be kept, then hung up on


# --- continued in a fresh notebook once ----------------------------------------------------------------------

async def test_kept_work_is_restored_once_even_when_two_restores_race(server, tmp_path):
    homes, make_slot = server
    keeper = keeper_for(tmp_path)
    slot = make_slot("10", files={"mine.txt": b"mine"})
    await keeper.save(slot, final=True)
    kept = keeper.sessions["10"]
    first, second = make_slot("11"), make_slot("12")
    results = await asyncio.gather(keeper.restore(kept, first), keeper.restore(kept, second),
                                   return_exceptions=True)
    assert results[0] == 1 and isinstance(results[1], AlreadyRestored)
    assert "mine.txt" in homes["11"].files and "mine.txt" not in homes["12"].files
    assert KeptStore(tmp_path / "kept").load_all()["10"].restored_into == "11"  # and so after a restart
    with pytest.raises(AlreadyRestored):
        await keeper.restore(kept, make_slot("13"))


async def test_a_restore_that_failed_can_be_tried_again(server, tmp_path):
    _, make_slot = server
    keeper = keeper_for(tmp_path)
    await keeper.save(make_slot("20", files={"mine.txt": b"mine"}), final=True)
    kept = keeper.sessions["20"]
    broken = make_slot("21")
    broken.endpoint = Endpoint("127.0.0.1", 9)  # nothing listens there
    with pytest.raises(ContentsError):  # (the handler tells the visitor it is still kept)
        await keeper.restore(kept, broken)
    assert kept.restored_into == ""
    assert await keeper.restore(kept, make_slot("22")) == 1
