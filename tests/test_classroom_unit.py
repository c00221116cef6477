"""The class view's model alone (issue 26): notebook outlines from an attendee's server (hostile ones
bounded), sections, and the class's progress through them."""

from __future__ import annotations

from spawner.classroom.outline import MAX_CELLS, outline_of
from spawner.classroom.seat import Seat
from spawner.classroom.summary import BEFORE, progress


def model(cells: list) -> dict:
    return {"type": "notebook", "content": {"cells": cells}}


def md(cid: str, text) -> dict:
    return {"id": cid, "cell_type": "markdown", "source": text}


def code(cid: str) -> dict:
    return {"id": cid, "cell_type": "code", "source": "secret = 1"}


def test_an_outline_keeps_cell_ids_and_headings_and_its_sections_are_its_two_highest_levels():
    outline = outline_of(model([code("a"), md("t", ["# Title\n", "intro"]), md("s1", "## Part one ##"),
                                code("b"), md("s1a", "### A detail"), code("c"), md("s2", "## Part two"),
                                code("d"), "not a cell", {"cell_type": "code"}]))
    assert outline.cells == {"a": 0, "t": 1, "s1": 2, "b": 3, "s1a": 4, "c": 5, "s2": 6, "d": 7}
    assert outline.headings == [(1, 1, "Title"), (2, 2, "Part one"), (4, 3, "A detail"), (6, 2, "Part two")]
    assert [title for _, _, title in outline.sections()] == ["Title", "Part one", "Part two"]
    assert outline.section(0) is None and outline.section(5) == "Part one" and outline.section(7) == "Part two"
    assert "secret" not in repr(outline)  # a code cell's source is never kept


def test_a_hostile_notebook_is_bounded_and_a_non_notebook_is_none():
    huge = outline_of(model([md(f"h{i}", f"# {'x' * 500}") for i in range(MAX_CELLS + 50)]))
    assert len(huge.cells) == MAX_CELLS and len(huge.headings) == 500
    assert all(len(title) == 80 for _, _, title in huge.headings)
    assert outline_of({"content": "a folder"}) is None and outline_of([]) is None


def test_progress_counts_each_attendee_in_the_section_of_their_furthest_cell():
    outline = outline_of(model([code("a"), md("s1", "## One"), code("b"), md("s2", "## Two"), code("c")]))
    seats = [Seat(c, "", n) for n, c in enumerate(["x", "y", "z"], 1)]
    seats[0].furthest = {"nb.ipynb": 0}
    seats[1].furthest = {"nb.ipynb": 2}
    seats[2].furthest = {"nb.ipynb": 4, "other.ipynb": 1}
    (nb, other) = progress(seats, {("y", "nb.ipynb"): outline})
    assert nb["path"] == "nb.ipynb" and nb["attendees"] == 3
    assert [(s["title"], s["attendees"]) for s in nb["sections"]] == [(BEFORE, 1), ("One", 1), ("Two", 1)]
    assert other == {"path": "other.ipynb", "attendees": 1, "sections": [{"title": BEFORE, "first_cell": 0,
                                                                           "attendees": 1}]}


def test_a_kernel_whose_websocket_closed_is_no_longer_shown_busy():
    from spawner.classroom.room import ClassView
    from spawner.pool.slot import ASSIGNED, Slot
    from spawner.secret import ServerSecret

    room = ClassView(secret=ServerSecret(b"x" * 32), memory=lambda cid: None)
    slot = Slot(cid="c1", state=ASSIGNED, generation=1, created=0.0, nonce="n")
    seat = room.seat(slot)
    room.kernel_state(slot, "k", "busy")
    assert seat.busy
    before = room.version
    room.kernel_gone(slot, "k")  # (the attendee closed the tab mid-run: the idle that follows is never seen)
    assert not seat.busy and room.version > before
