"""A reload applies the config file as it is (spawner.reload, issue 24): what it no longer names is the default."""

from __future__ import annotations

import pytest
from traitlets import Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Config, Configurable


class Part(Configurable):
    count = Integer(3, config=True)
    origins = List(Unicode(), [], config=True)
    stored = Unicode(config=True)
    unconfigured = Integer(7)  # set by code, never by a config file

    @default("stored")
    def _stored(self):
        return "from-disk"

    @validate("count")
    def _check(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"Part.count must not be negative, not {proposal.value}")
        return proposal.value


def config(**values) -> Config:
    c = Config()
    for name, value in values.items():
        setattr(c.Part, name, value)
    return c


def test_a_setting_removed_from_the_file_returns_to_its_default():
    from spawner.reload import apply

    part = Part(config=config(count=10, origins=["*"], stored="typed"))
    part.unconfigured = 9
    assert apply(part, config(count=10)) == {"origins": [], "stored": "from-disk"}
    assert (part.count, part.origins, part.stored, part.unconfigured) == (10, [], "from-disk", 9)
    assert apply(part, config()) == {"count": 3}
    assert apply(part, config()) == {}  # nothing left to change


def test_lazy_values_apply_as_at_start():
    from spawner.reload import apply

    c = Config()
    c.Part.origins.append("https://course.example")
    part = Part()
    assert apply(part, c) == {"origins": ["https://course.example"]}


def test_a_bad_value_raises_naming_itself():
    from spawner.reload import apply

    part = Part()
    with pytest.raises(TraitError, match=r"Part\.count"):
        apply(part, config(count=-1))
