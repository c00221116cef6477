"""Kept work's rules, against a small real server that speaks Jupyter's contents API.

The server plays one attendee's notebook server (files in memory, with sizes
and times as Jupyter lists them); the keeper saves from it into a real store
on disk. The wall clock is fake where expiry needs hours to pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from tornado.web import Application, RequestHandler

from spawner.engines.base import Endpoint
from spawner.keep import KeptStore, WorkKeeper
from spawner.keep.archive import ZipStream
from spawner.keep.store import BadPath, check_path
from spawner.pool.slot import ASSIGNED, Slot
from spawner.secret import ServerSecret
from tests.fakes import FakeClock
from tests.resources._runner import serve_tornado

SECRET = ServerSecret(b"k" * 32)
CID = "abc123"


class Home:
    """An attendee's home directory as their server would list it: path -> (bytes, last_modified)."""

    def __init__(self, files: dict[str, tuple[bytes, str]]):
        self.files = dict(files)
        self.reads: list[str] = []
        self.saving: dict[str, list[bytes]] = {}  # what reads of a file get first, while a save is under way
        self.odd: list[dict] = []  # entries listed at the top as they are (a hostile server's names)

    def listing(self, folder: str) -> list[dict]:
        prefix = f"{folder}/" if folder else ""
        entries, folders = [], set()
        for path, (data, modified) in self.files.items():
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                folders.add(prefix + rest.split("/")[0])
            else:
                entries.append({"name": rest, "path": path, "type": "file", "size": len(data),
                                "last_modified": modified})
        entries += [{"name": f.rsplit("/", 1)[-1], "path": f, "type": "directory", "size": None}
                    for f in sorted(folders)]
        return entries + (self.odd if not folder else [])


def contents_app(home: Home, token: str) -> Application:
    class Base(RequestHandler):
        def prepare(self):
            if self.request.headers.get("Authorization") != f"token {token}":
                self.send_error(403)

    class Contents(Base):
        def get(self, path):
            path = path.strip("/")
            if self.get_argument("hash", None):
                data, modified = home.files[path]
                self.finish({"hash": hashlib.sha256(data).hexdigest(), "size": len(data), "last_modified": modified})
                return
            self.finish({"type": "directory", "content": home.listing(path)})

    class Files(Base):
        def get(self, path):
            home.reads.append(path)
            mid_save = home.saving.get(path)
            self.finish(mid_save.pop(0) if mid_save else home.files[path][0])

    return Application([(r"/user/x/api/contents/?(.*)", Contents), (r"/user/x/files/(.*)", Files)])


@pytest.fixture
async def attendee():
    home = Home({"README.md": (b"the workshop's own", "2026-01-01T00:00:00Z"),
                 "01-intro.ipynb": (b'{"cells": []}', "2026-01-01T00:00:00Z")})
    running = serve_tornado(contents_app(home, SECRET.token_for(CID)), "127.0.0.1", 0, None)
    slot = Slot(cid=CID, state=ASSIGNED, generation=0, created=0.0, nonce="n0nce",
                endpoint=Endpoint("127.0.0.1", running.port), image="img")
    yield home, slot
    await running.stop()


def keeper_for(tmp_path: Path, clock: FakeClock | None = None, **settings) -> WorkKeeper:
    keeper = WorkKeeper(secret=SECRET, store=KeptStore(tmp_path / "kept"), wallclock=clock or FakeClock(1e9),
                        **settings)
    keeper._gate = asyncio.Semaphore(4)
    return keeper


def as_slot_url(slot: Slot) -> None:
    """The stand-in serves /user/x/: point the slot's URL there whatever its id."""
    slot.url = lambda path="", origin="": f"{origin}/user/x/{path}"  # type: ignore[method-assign]


async def learn(keeper: WorkKeeper, slot: Slot) -> None:
    await keeper.learn_image(slot, "img#0")
    await keeper.image.hashing  # the hashes follow in the background; these tests want them known


async def test_only_created_or_changed_files_are_kept_and_unchanged_ones_are_not_fetched_again(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.files["mine.py"] = (b"print('mine')", "2026-05-01T10:00:00Z")
    home.files["01-intro.ipynb"] = (b'{"cells": [1]}', "2026-05-01T10:01:00Z")
    home.files["data/deep/x.csv"] = (b"1,2", "2026-05-01T10:02:00Z")
    kept = await keeper.save(slot, final=False)
    assert sorted(kept.files) == ["01-intro.ipynb", "data/deep/x.csv", "mine.py"]
    assert (tmp_path / "kept" / CID / "files" / "data" / "deep" / "x.csv").read_bytes() == b"1,2"

    home.reads.clear()
    home.files["mine.py"] = (b"print('changed')", "2026-05-01T11:00:00Z")
    del home.files["data/deep/x.csv"]  # deleted by the attendee: gone from the kept copy too
    kept = await keeper.save(slot, final=False)
    assert home.reads == ["mine.py"]  # only what changed since the last save was read
    assert sorted(kept.files) == ["01-intro.ipynb", "mine.py"]
    assert not (tmp_path / "kept" / CID / "files" / "data" / "deep" / "x.csv").exists()


async def test_a_workshop_file_saved_unchanged_is_not_kept(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.files["README.md"] = (b"the workshop's own", "2026-05-01T10:00:00Z")  # re-saved, same bytes
    kept = await keeper.save(slot, final=False)
    assert kept.files == {} and "README.md" in kept.pristine


async def test_a_file_changed_before_its_hash_was_asked_is_never_taken_for_the_images(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await keeper.learn_image(slot, "img#0")  # listed; the hashes are asked for in the background
    home.files["README.md"] = (b"the attendee's", "2026-05-01T10:00:00Z")  # edited in between
    await keeper.image.hashing
    assert keeper.image.baselines["img"]["README.md"][2] == "" and keeper.image.baselines["img"]["01-intro.ipynb"][2]
    kept = await keeper.save(slot, final=False)
    assert list(kept.files) == ["README.md"]


NOTEBOOK = json.dumps({"cells": [{"cell_type": "markdown", "source": "mine"}], "nbformat": 4}).encode()


async def test_a_notebook_read_mid_save_is_read_again_until_whole(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.files["mine.ipynb"] = (NOTEBOOK, "2026-05-01T10:00:00Z")
    home.files["notes.txt"] = (b"a line of mine", "2026-05-01T10:00:00Z")
    # jupyter_server's atomic_writing empties the file, then writes it: reads in between get nothing or a part
    home.saving = {"mine.ipynb": [b"", NOTEBOOK[:20]], "notes.txt": [b"a li"]}
    kept = await keeper.save(slot, final=False)
    assert home.reads.count("mine.ipynb") == 3 and home.reads.count("notes.txt") == 2
    assert sorted(kept.files) == ["mine.ipynb", "notes.txt"] and not kept.skipped
    assert (tmp_path / "kept" / CID / "files" / "mine.ipynb").read_bytes() == NOTEBOOK
    assert (tmp_path / "kept" / CID / "files" / "notes.txt").read_bytes() == b"a line of mine"


async def test_a_notebook_mid_save_at_every_read_keeps_its_last_version(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.files["mine.ipynb"] = (NOTEBOOK, "2026-05-01T10:00:00Z")
    await keeper.save(slot, final=False)
    newer = NOTEBOOK.replace(b"mine", b"mine, more")
    home.files["mine.ipynb"] = (newer, "2026-05-01T10:05:00Z")
    # saved again and again (collaboration saves as the attendee types): empty or half-written at every read
    home.saving = {"mine.ipynb": [b"", newer[:10], b"", newer[:30], b""]}
    kept = await keeper.save(slot, final=False)
    assert (tmp_path / "kept" / CID / "files" / "mine.ipynb").read_bytes() == NOTEBOOK
    assert "being saved" in kept.skipped["mine.ipynb"]["why"], kept.skipped
    kept = await keeper.save(slot, final=False)  # the next checkpoint finds it whole
    assert (tmp_path / "kept" / CID / "files" / "mine.ipynb").read_bytes() == newer and not kept.skipped


async def test_a_broken_notebook_of_the_attendees_own_is_kept_as_it_is(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.files["broken.ipynb"] = (b'{"cells": [', "2026-05-01T10:00:00Z")  # the same at every read
    kept = await keeper.save(slot, final=False)
    assert list(kept.files) == ["broken.ipynb"] and home.reads.count("broken.ipynb") == 2
    assert (tmp_path / "kept" / CID / "files" / "broken.ipynb").read_bytes() == b'{"cells": ['


async def test_the_size_cap_lists_what_does_not_fit_newest_first(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path, max_per_attendee=1000)
    await learn(keeper, slot)
    home.files["huge.bin"] = (b"x" * 2000, "2026-05-01T10:00:00Z")
    home.files["old.txt"] = (b"o" * 600, "2026-05-01T09:00:00Z")
    home.files["new.txt"] = (b"n" * 600, "2026-05-01T11:00:00Z")
    kept = await keeper.save(slot, final=False)
    assert list(kept.files) == ["new.txt"]
    assert kept.skipped["huge.bin"]["why"] == "too large"
    assert kept.skipped["old.txt"]["why"].startswith("over the 1000B each attendee may keep")


async def test_the_service_total_cap_refuses_files_and_says_so(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path, max_total=500)
    await learn(keeper, slot)
    home.files["a.txt"] = (b"a" * 600, "2026-05-01T10:00:00Z")
    kept = await keeper.save(slot, final=False)
    assert kept.files == {} and "full" in kept.skipped["a.txt"]["why"]
    assert "max_total" in keeper.problem


async def test_hostile_paths_from_a_server_never_leave_the_sessions_folder(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    await learn(keeper, slot)
    home.odd = [{"name": "escaped.txt", "path": path, "type": "file", "size": 3, "last_modified": "x"}
                for path in ("../../escaped.txt", "/tmp/escaped.txt", "a/../../escaped.txt")]
    home.files["fine.txt"] = (b"ok", "2026-05-01T10:00:00Z")
    kept = await keeper.save(slot, final=False)
    assert set(kept.skipped) == {e["path"] for e in home.odd} and list(kept.files) == ["fine.txt"]
    assert not list(tmp_path.rglob("escaped.txt")) and home.reads == ["fine.txt"]


@pytest.mark.parametrize("path", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "a\0b"])
def test_store_refuses_paths_that_are_not_plain(path):
    with pytest.raises(BadPath):
        check_path(path)


async def test_a_failed_save_is_recorded_and_shown_never_silent(attendee, tmp_path):
    _, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    slot.endpoint = Endpoint("127.0.0.1", 9)  # nothing listens there
    kept = await keeper.save(slot, final=True, timeout=2)
    assert kept.error.startswith("saving failed") and "the last save of 1 attendee(s) failed" in keeper.problem


async def test_ended_work_belongs_to_its_cookie_expires_after_keep_hours_and_survives_a_restart(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    clock = FakeClock(1e9)
    keeper = keeper_for(tmp_path, clock, keep_hours=2)
    await learn(keeper, slot)
    home.files["mine.py"] = (b"x", "2026-05-01T10:00:00Z")
    await keeper.session_ended(slot, "idle", alive=True)
    owner = SECRET.sign(f"{CID}:n0nce", "session")
    assert keeper.owned(CID, session=None, kept=None) is None
    assert keeper.owned(CID, session=owner, kept=None) is not None
    # the same value signed as the cookie of the session before (kept) opens it too, as that purpose only
    assert keeper.owned(CID, session=None, kept=SECRET.sign(f"{CID}:n0nce", "kept")) is not None
    assert keeper.owned(CID, session=None, kept=owner) is None
    # an earlier occupant of the id
    assert keeper.owned(CID, session=SECRET.sign(f"{CID}:other", "session"), kept=None) is None
    assert keeper.owned(CID, session=f"{CID}:n0nce", kept=None) is None  # unsigned
    other = ServerSecret(b"z" * 32)  # signed by another secret
    assert keeper.owned(CID, session=other.sign(f"{CID}:n0nce", "session"), kept=None) is None

    # Another run of nbpool finds it on disk (and nothing of its nonce in what operators see).
    later = keeper_for(tmp_path, clock, keep_hours=2)
    await later.start(lambda: [SimpleNamespace(slots={}, clock=clock)])
    later.stop()
    assert later.owned(CID, session=owner, kept=None).files.keys() == {"mine.py"}
    clock.advance(3600)
    assert await later.expire() == 0
    clock.advance(3601)
    assert await later.expire() == 1
    assert later.owned(CID, session=owner, kept=None) is None and not (tmp_path / "kept" / CID).exists()


async def test_a_live_session_found_without_its_container_at_start_becomes_ended(attendee, tmp_path):
    home, slot = attendee
    as_slot_url(slot)
    keeper = keeper_for(tmp_path)
    home.files["mine.py"] = (b"x", "2026-05-01T10:00:00Z")
    await keeper.save(slot, final=False)  # a checkpoint, then nbpool stopped and the container died
    later = keeper_for(tmp_path)
    await later.start(lambda: [SimpleNamespace(slots={}, clock=FakeClock())])
    later.stop()
    kept = later.sessions[CID]
    assert kept.state == "ended" and "last checkpoint" in kept.reason


def test_store_files_are_private_and_zip_holds_exactly_the_kept_files(tmp_path):
    from spawner.keep import Kept

    store = KeptStore(tmp_path / "kept")
    kept = Kept(cid="beef", nonce="n", files={"a/b.txt": {"size": 2, "modified": "", "saved": 0}})
    store.write_file("beef", "a/b.txt", b"hi")
    store.save_meta(kept)
    for path in [tmp_path / "kept", tmp_path / "kept" / "beef", tmp_path / "kept" / "beef" / "files" / "a"]:
        assert os.stat(path).st_mode & 0o777 == 0o700, path
    for path in [tmp_path / "kept" / "beef" / "kept.json", tmp_path / "kept" / "beef" / "files" / "a" / "b.txt"]:
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    stream = ZipStream(store.zip_entries(kept))
    data = b"".join(iter(stream.step, b""))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a/b.txt"] and archive.read("a/b.txt") == b"hi"
    assert json.loads((tmp_path / "kept" / "beef" / "kept.json").read_text())["files"] == kept.files


def test_a_big_notebook_is_whole_by_its_listed_size_and_its_end_without_a_parse():
    from spawner.keep.settled import PARSE_AT_MOST, whole

    big = b'{"cells": [{"outputs": "' + b"A" * PARSE_AT_MOST + b'"}], "nbformat": 4}\n'
    assert whole("big.ipynb", len(big), big)
    assert not whole("big.ipynb", len(big), big[:PARSE_AT_MOST + 10])  # cut off (and so shorter than listed)
    assert not whole("big.ipynb", len(big) + 5, big)  # the listing saw another version: read again
    assert not whole("small.IPYNB", 3, b'{"c')  # a small one is parsed, whatever the case of its name
    assert whole("notes.txt", 4, b"four") and not whole("notes.txt", 4, b"fo")
