"""Several workshops: the settings' checks, the service-wide cap's rule, scheduled warming on a fake clock,
and the push's rules, without an engine (the real service is tested in test_workshops.py)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from traitlets.config import Config

from spawner.content.merge import beside_name
from spawner.workshops import WorkshopError, parse_workshops, service_zone
from spawner.workshops.cap import TotalCap
from spawner.workshops.push import PushError, check_files, files_from_folder
from spawner.workshops.schedule import ASSUMED_LAUNCH, LEAD_FACTOR, LEAD_MARGIN, StartRate, Window, WorkshopSchedule

UTC_ZONE = service_zone("UTC")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# --- the settings ------------------------------------------------------------------------------

def test_workshop_settings_are_split_into_the_pools_and_the_engines():
    specs = parse_workshops({"r-stats": {"display_name": "R stats", "image": "r:1", "warm": 5, "mem_limit": "2G",
                                         "landing_path": "/lab", "key": "sesame-123"}}, UTC_ZONE)
    spec = specs["r-stats"]
    assert (spec.display_name, spec.landing_path, spec.key) == ("R stats", "lab", "sesame-123")
    assert spec.pool == {"warm": 5} and spec.engine == {"image": "r:1", "mem_limit": "2G"}
    base = Config()
    base.Pool.cull_idle = 300
    base.DockerBackend.image = "base:1"
    merged = spec.config(base, "DockerBackend")
    assert merged.Pool.warm == 5 and merged.Pool.cull_idle == 300 and merged.DockerBackend.image == "r:1"
    assert base.DockerBackend.image == "base:1"  # the service's own config is untouched


@pytest.mark.parametrize(("workshops", "words"), [
    ({"Python Intro": {}}, "'Python Intro' is not URL-safe"),
    ({"r/stats": {}}, "'r/stats' is not URL-safe"),
    ({"-r": {}}, "'-r' is not URL-safe"),
    ({"r": {"colour": "red"}}, "workshops['r']: unknown setting 'colour'"),
    ({"r": {"landing_path": "../../etc"}}, "workshops['r'].landing_path"),
    ({"r": {"key": "short"}}, "workshops['r'].key"),
    ({"r": {"push_folder": "/no/such/folder"}}, "'/no/such/folder' is not a folder"),
    ({"r": {"schedule": [{"start": "2026-12-03 09:00", "end": "2026-12-03 08:00", "warm": 4}]}}, "is not after start"),
    ({"r": {"schedule": [{"start": "tomorrow", "end": "2026-12-03 08:00", "warm": 4}]}}, "'tomorrow' is not a time"),
    ({"r": {"schedule": [{"start": "2026-12-03 09:00", "end": "2026-12-03 10:00"}]}}, "needs 'warm'"),
    ({"r": {"schedule": [{"start": "2026-12-03 09:00", "end": "2026-12-03 10:00", "warm": -1}]}},
     "schedule[0].warm must be a whole number"),
    ({"r": "not a dict"}, "workshops['r'] must be a dict"),
])
def test_bad_workshop_settings_are_refused_naming_them(workshops, words):
    with pytest.raises(WorkshopError) as caught:
        parse_workshops(workshops, UTC_ZONE)
    assert words in str(caught.value)


def test_schedule_times_are_read_in_the_service_zone_unless_they_carry_an_offset():
    window = {"start": "2026-12-03 09:00", "end": "2026-12-03T12:30+00:00", "warm": 40}
    (w,) = parse_workshops({"r": {"schedule": [window]}}, service_zone("Europe/Berlin"))["r"].windows
    assert w.start == at("2026-12-03 08:00")  # 09:00 in Berlin (UTC+1 in December)
    assert w.end == at("2026-12-03 12:30")
    with pytest.raises(ValueError, match="'Mars/Olympus' is not a time zone"):
        service_zone("Mars/Olympus")


# --- the service-wide cap ----------------------------------------------------------------------------

class StandInPool:
    """What the cap reads of a pool (compared by identity, as pools are)."""

    def __init__(self, cap: int, used: int, retired: bool):
        self.max_containers, self.slots, self.retired, self.closing = cap, dict.fromkeys(range(used)), retired, False


def pool(cap: int, used: int = 0, retired: bool = False) -> StandInPool:
    return StandInPool(cap, used, retired)


def test_each_workshop_keeps_its_share_of_the_total():
    a, b = pool(30), pool(10)
    cap = TotalCap(20, lambda: [a, b])
    assert cap.shares() == {a: 15, b: 5}
    # a may take everything but b's unused share...
    a.slots = dict.fromkeys(range(15))
    assert cap.room(a) == 0 + 20 - 15 - 5
    b.slots = dict.fromkeys(range(2))
    assert cap.room(a) == 20 - 17 - 3 == 0  # b's three unused places are held for it
    assert cap.room(b) == 3  # and b can still reach its share
    b.slots = dict.fromkeys(range(5))
    assert cap.room(a) == 0 and cap.room(b) == 0  # at the total, nobody starts more
    # The last place of a's share is a's...
    a.slots = dict.fromkeys(range(14))
    assert cap.room(a) == 1 and cap.room(b) == 0
    # ...and a place beyond the shares (21 x 30/40 = 15.75, 21 x 10/40 = 5.25) goes to whoever asks first.
    a.slots = dict.fromkeys(range(15))
    wider = TotalCap(21, lambda: [a, b])
    assert wider.shares() == {a: 15, b: 5} and wider.room(a) == 1 and wider.room(b) == 1


def test_no_total_means_no_shared_limit_and_retired_pools_still_count_their_containers():
    a = pool(5)
    assert TotalCap(0, lambda: [a]).room(a) > 1000
    old, new = pool(10, used=4, retired=True), pool(10)
    cap = TotalCap(8, lambda: [old, new])
    assert cap.shares() == {new: 8}  # a retiring workshop is owed nothing...
    assert cap.room(new) == 4  # ...but its attendees' containers still count


# --- scheduled warming ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakePool:
    def __init__(self, warm: int = 2, cap: int = 40, concurrency: int = 4):
        self.warm, self.max_containers, self.spawn_concurrency = warm, cap, concurrency
        self.warm_floor, self.available, self.launching = 0, warm, 0

    def set_warm_floor(self, floor: int) -> None:
        self.warm_floor = floor

    def count(self, state: str) -> int:
        return 0


def schedule(windows, launches, clock, pool=None, tmp: Path | None = None, intervals=(), cores: int = 4):
    rate = StartRate(tmp / "rate.json" if tmp else None, lambda: launches, lambda: list(intervals), cores=cores)
    return WorkshopSchedule("r", windows, pool or FakePool(), rate, logging.getLogger("test"), clock=clock)


def test_the_lead_time_comes_from_the_measured_launches_with_a_margin(tmp_path):
    start = at("2026-12-03 09:00")
    clock = FakeClock(start - 3600)
    window = Window(start, at("2026-12-03 12:30"), 40, "9 to 12:30")
    launches = [4.0] * 9 + [8.0]  # p90 of ten launches: the tenth
    sched = schedule([window], launches, clock, tmp=tmp_path)
    lead, why = sched.lead(window)
    # 38 extra spares, 4 at once: 10 waves of 8 s, x1.5, plus the margin.
    assert lead == 10 * 8.0 * LEAD_FACTOR + LEAD_MARGIN
    assert "38 more spares" in why and "p90 of the last 10 launches" in why
    # Remembered for the next start of the service (no launch measured yet then).
    assert schedule([window], [], clock, tmp=tmp_path).lead(window)[0] == lead
    fresh = schedule([window], [], clock)
    assert fresh.lead(window)[0] == 10 * ASSUMED_LAUNCH * LEAD_FACTOR + LEAD_MARGIN
    assert "assumed" in fresh.lead(window)[1]
    # Launches are CPU-bound: on 2 cores, no more than 2 go at full speed, whatever spawn_concurrency says.
    assert schedule([window], launches, clock, cores=2).lead(window)[0] == 38 / 2 * 8.0 * LEAD_FACTOR + LEAD_MARGIN


def test_a_rate_measured_in_a_burst_of_launches_beats_single_launch_times(tmp_path):
    start = at("2026-12-03 09:00")
    window = Window(start, start + 3600, 40, "9 to 10")
    # Five launches overlapping from t=100 to t=110 (a burst): 0.5 a second. A lone launch at t=200 is no burst.
    burst = [(100.0, 104.0), (100.5, 106.0), (101.0, 108.0), (103.0, 109.0), (105.0, 110.0), (200.0, 202.0)]
    sched = schedule([window], [2.0] * 6, FakeClock(start - 3600), tmp=tmp_path, intervals=burst)
    lead, why = sched.lead(window)
    assert lead == 38 / 0.5 * LEAD_FACTOR + LEAD_MARGIN
    assert "at 0.50 a second (measured in the last 1 bursts of launches)" in why
    # Remembered across a restart too.
    again = schedule([window], [], FakeClock(start - 3600), tmp=tmp_path)
    assert again.lead(window)[0] == lead and "before the last restart" in again.lead(window)[1]


def test_spares_rise_at_the_lead_before_the_start_and_fall_after_the_end(caplog):
    start, end = at("2026-12-03 09:00"), at("2026-12-03 12:30")
    clock = FakeClock(start - 3600)
    pool = FakePool(warm=2, concurrency=4)
    sched = schedule([Window(start, end, 10, "9 to 12:30")], [6.0], clock, pool)
    lead = sched.lead(sched.windows[0])[0]  # 8 extra: 2 waves of 6 s, x1.5 + 60 = 78 s
    assert lead == 78
    caplog.set_level(logging.INFO)
    assert sched.tick() == 0 and pool.warm_floor == 0
    clock.now = start - lead - 1
    assert sched.tick() == 0
    clock.now = start - lead
    assert sched.tick() == 10 and pool.warm_floor == 10
    assert "raising spares to 10 for the window 9 to 12:30, 78s ahead" in caplog.text
    assert sched.status()[0]["state"].startswith("warming")
    clock.now = start + 60
    assert sched.tick() == 10 and sched.status()[0]["state"] == "open"
    clock.now = end
    assert sched.tick() == 0 and pool.warm_floor == 0
    assert "is over: back to the base warm (2)" in caplog.text
    assert sched.status() == []


def test_overlaps_past_windows_and_windows_above_the_cap_are_explained(caplog):
    now = at("2026-12-03 10:00")
    clock = FakeClock(now)
    windows = [Window(at("2026-12-03 07:00"), at("2026-12-03 08:00"), 5, "early"),
               Window(at("2026-12-03 09:30"), at("2026-12-03 11:00"), 8, "running"),
               Window(at("2026-12-03 10:30"), at("2026-12-03 12:00"), 60, "big")]
    pool = FakePool(warm=2, cap=40)
    sched = schedule(windows, [5.0], clock, pool)
    caplog.set_level(logging.INFO)
    sched.explain(cap=30)
    text = caplog.text
    assert "window early (warm 5) is over already: ignored" in text
    assert "window running (warm 8) has started already: its spares are raised now" in text
    assert "window big (warm 60) asks more spares than its max_containers (40)" in text
    assert "asks more than its share of the service-wide cap (30)" in text
    assert "windows running and big overlap: while both are open the larger warm (60) applies" in text
    assert sched.tick() == 8 and pool.warm_floor == 8  # the open window; the big one is still far
    clock.now = at("2026-12-03 10:29")  # within the big one's lead
    assert sched.tick() == 60 and pool.warm_floor == 40  # never above the workshop's own cap


# --- the push -------------------------------------------------------------------------------------

def test_the_new_version_of_an_edited_file_goes_beside_it():
    assert beside_name("ex1.ipynb") == "ex1 (updated).ipynb"
    assert beside_name("week 2/data.csv") == "week 2/data (updated).csv"
    assert beside_name("README") == "README (updated)"


def test_a_push_is_checked_before_anything_is_copied(tmp_path):
    with pytest.raises(PushError, match="no files"):
        check_files({})
    for bad in ("../x.ipynb", "/etc/passwd", "a//b", ".hidden/x", "dir/.env"):
        with pytest.raises(PushError):
            check_files({bad: b"x"})
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "ex1.ipynb").write_text("{}")
    (tmp_path / "README.md").write_text("hi")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("secret")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert files_from_folder(str(tmp_path)) == {"README.md": b"hi", "exercises/ex1.ipynb": b"{}"}


def test_window_times_in_the_past_are_kept_for_the_log_not_refused():
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="minutes")
    later = (datetime.now(UTC) - timedelta(hours=20)).isoformat(timespec="minutes")
    (w,) = parse_workshops({"r": {"schedule": [{"start": yesterday, "end": later, "warm": 3}]}},
                           UTC_ZONE)["r"].windows
    assert w.end < datetime.now(UTC).timestamp()


def test_pushed_files_are_stored_for_nbpool_alone_and_read_back_after_a_restart(tmp_path):
    from spawner.workshops.push import Updates

    folder = tmp_path / "data" / "pushed" / "r-stats"
    first = Updates("r-stats", folder, secret=None, keeper=None, log=logging.getLogger("test"))
    first.files = {"week 1/ex1.ipynb": b"{}", "README.md": b"hi"}
    first.versions = {"week 1/ex1.ipynb": {"aa", "bb"}, "README.md": {"cc"}}
    first._store()
    again = Updates("r-stats", folder, secret=None, keeper=None, log=logging.getLogger("test"))
    assert again.files == first.files and again.versions == first.versions
    for each in (tmp_path / "data" / "pushed", folder, folder / "files" / "week 1"):
        assert each.stat().st_mode & 0o777 == 0o700, each
    assert (folder / "files" / "week 1" / "ex1.ipynb").stat().st_mode & 0o777 == 0o600
    assert (folder / "pushed.json").stat().st_mode & 0o777 == 0o600


def test_the_report_of_one_workshop_keeps_its_events_and_the_services_keeps_the_totals():
    from spawner.report.analysis import of_workshop

    events = [{"e": "config", "workshop": "a", "warm": 2}, {"e": "config", "workshop": "b", "warm": 5},
              {"e": "sample", "assigned": 3}, {"e": "sample", "workshop": "a", "assigned": 1},
              {"e": "sample", "workshop": "b", "assigned": 2}, {"e": "handout", "workshop": "a", "cid": "1"},
              {"e": "handout", "workshop": "b", "cid": "2"}, {"e": "refused", "why": "full"}]
    assert [e for e in of_workshop(events, "a")] == [events[0], events[3], events[5]]
    whole = of_workshop(events, None)
    assert [e for e in whole if e["e"] == "sample"] == [events[2]]  # the total, not each workshop's
    assert len(whole) == len(events) - 2
