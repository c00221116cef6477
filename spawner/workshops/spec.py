"""One workshop's settings, as the operator writes them in ``c.NbpoolApp.workshops``, checked.

Each workshop is a name and a dict. Its own keys (display name, landing
path, key, schedule, push folder) live here; pool sizes and limits are the
``Pool`` and container-engine settings of the same names, laid over the
service's own config for that workshop alone, so every check and default of
those settings applies unchanged. Anything else is refused, naming it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

from traitlets.config import Config

from ..content.sources import Source, SourceError, parse_sources
from .schedule import Window

# URL-safe, and short enough for the engine's container names (<pool name>-<workshop>-<id>).
NAME_OK = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?$")
KEY_OK = re.compile(r"^[A-Za-z0-9._~-]{8,}$")

# (not spawn_concurrency: starts compete for the same machine, so its limit is the service's, shared)
POOL_KEYS = ("warm", "max_containers", "cull_idle", "cull_max_age", "warmup_path")
ENGINE_KEYS = ("image", "mem_limit", "cpu_limit", "pids_limit", "disk_limit", "environment", "volumes",
               "prestart_kernel", "collaboration")
OWN_KEYS = ("display_name", "landing_path", "key", "helper_key", "instructor_key", "schedule", "push_folder",
            "content")
ALL_KEYS = OWN_KEYS + POOL_KEYS + ENGINE_KEYS


class WorkshopError(ValueError):
    """A workshop's settings are wrong; the message names the workshop and the setting."""


@dataclass
class WorkshopSpec:
    """What the operator asked for one workshop."""

    name: str
    display_name: str
    landing_path: str | None  # None: WebApp.landing_path
    key: str | None  # None: WebApp.workshop_key
    helper_key: str | None  # the class view's key for this workshop's helpers (None: derived from the secret)
    push_folder: str
    instructor_key: str | None = None  # the instructor's key (None: derived from the secret)
    windows: list[Window] = field(default_factory=list)
    content: list[Source] = field(default_factory=list)  # git repositories poured into its containers
    pool: dict = field(default_factory=dict)  # Pool settings it overrides
    engine: dict = field(default_factory=dict)  # container-engine settings it overrides

    def config(self, base: Config, engine_class: str) -> Config:
        """The service's config with this workshop's settings laid over it."""
        merged = copy.deepcopy(base)  # (Config.merge shares sections: the service's own must stay as it is)
        over = Config()
        for key, value in self.pool.items():
            over.Pool[key] = value
        for key, value in self.engine.items():
            over[engine_class][key] = value
        merged.merge(over)
        return merged

    @property
    def image(self) -> str | None:
        return self.engine.get("image")


def parse_workshops(raw: object, zone: tzinfo) -> dict[str, WorkshopSpec]:
    """``c.NbpoolApp.workshops`` checked: {name: spec}; WorkshopError names the first thing wrong."""
    if not isinstance(raw, dict):
        raise WorkshopError(f"NbpoolApp.workshops must be a dict of name -> settings, not {type(raw).__name__}")
    return {name: parse_one(name, settings, zone) for name, settings in raw.items()}


def parse_one(name: object, settings: object, zone: tzinfo) -> WorkshopSpec:
    if not isinstance(name, str) or not NAME_OK.match(name):
        raise WorkshopError(f"workshop name {name!r} is not URL-safe: use 1-24 lower-case letters, digits and "
                            "'-' (not at either end), e.g. 'python-intro'")
    where = f"workshops[{name!r}]"
    if not isinstance(settings, dict):
        raise WorkshopError(f"{where} must be a dict of settings, not {type(settings).__name__}")
    unknown = sorted(str(k) for k in settings if k not in ALL_KEYS)
    if unknown:
        raise WorkshopError(f"{where}: unknown setting {unknown[0]!r} (known: {', '.join(ALL_KEYS)})")
    display = settings.get("display_name", name)
    if not isinstance(display, str) or not display.strip():
        raise WorkshopError(f"{where}.display_name must be a non-empty string, not {display!r}")
    landing = settings.get("landing_path")
    if landing is not None:
        if not isinstance(landing, str) or ".." in landing.split("/") or "://" in landing:
            raise WorkshopError(f"{where}.landing_path must be a path inside the notebook server, not {landing!r}")
        landing = landing.lstrip("/")
    key = settings.get("key")
    if key is not None and not (isinstance(key, str) and (key == "" or KEY_OK.match(key))):
        given = f"{len(key)} characters" if isinstance(key, str) else f"a {type(key).__name__}"
        raise WorkshopError(f"{where}.key must be empty or at least 8 URL-safe characters (letters, digits, "
                            f". _ ~ -); the one given is {given} (keys are secret: never shown)")
    helper_key = settings.get("helper_key")
    if helper_key is not None and not (isinstance(helper_key, str) and KEY_OK.match(helper_key)):
        given = f"{len(helper_key)} characters" if isinstance(helper_key, str) else f"a {type(helper_key).__name__}"
        raise WorkshopError(f"{where}.helper_key must be at least 8 URL-safe characters (letters, digits, "
                            f". _ ~ -); the one given is {given} (keys are secret: never shown)")
    instructor_key = settings.get("instructor_key")
    if instructor_key is not None and not (isinstance(instructor_key, str) and KEY_OK.match(instructor_key)):
        given = (f"{len(instructor_key)} characters" if isinstance(instructor_key, str)
                 else f"a {type(instructor_key).__name__}")
        raise WorkshopError(f"{where}.instructor_key must be at least 8 URL-safe characters (letters, digits, "
                            f". _ ~ -); the one given is {given} (keys are secret: never shown)")
    folder = settings.get("push_folder", "")
    if not isinstance(folder, str):
        raise WorkshopError(f"{where}.push_folder must be a folder's path, not {folder!r}")
    if folder and not Path(folder).is_dir():
        raise WorkshopError(f"{where}.push_folder: {folder!r} is not a folder")
    windows = parse_schedule(where, settings.get("schedule", []), zone)
    try:
        content = parse_sources(settings.get("content"), f"{where}.content")
    except SourceError as exc:
        raise WorkshopError(str(exc)) from None
    return WorkshopSpec(name=name, display_name=display.strip(), landing_path=landing, key=key, helper_key=helper_key,
                        push_folder=folder, instructor_key=instructor_key, content=content,
                        windows=windows, pool={k: settings[k] for k in POOL_KEYS if k in settings},
                        engine={k: settings[k] for k in ENGINE_KEYS if k in settings})


def parse_time(where: str, value: object, zone: tzinfo) -> float:
    """'2026-12-03 09:00' (in ``zone``) or ISO 8601 with an offset -> seconds since the epoch."""
    if not isinstance(value, str):
        raise WorkshopError(f"{where} must be a time such as '2026-12-03 09:00', not {value!r}")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise WorkshopError(f"{where}: {value!r} is not a time such as '2026-12-03 09:00' or "
                            "'2026-12-03T09:00+01:00'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()


def parse_schedule(where: str, raw: object, zone: tzinfo) -> list[Window]:
    if not isinstance(raw, list | tuple):
        raise WorkshopError(f"{where}.schedule must be a list of windows such as "
                            "[{'start': '2026-12-03 09:00', 'end': '2026-12-03 12:30', 'warm': 40}]")
    windows = []
    for i, item in enumerate(raw):
        at = f"{where}.schedule[{i}]"
        if not isinstance(item, dict):
            raise WorkshopError(f"{at} must be a dict with start, end and warm")
        extra = sorted(str(k) for k in item if k not in ("start", "end", "warm"))
        missing = [k for k in ("start", "end", "warm") if k not in item]
        if extra or missing:
            raise WorkshopError(f"{at}: " + (f"unknown key {extra[0]!r}" if extra else f"needs {missing[0]!r}")
                                + " (a window has start, end and warm)")
        start, end = parse_time(f"{at}.start", item["start"], zone), parse_time(f"{at}.end", item["end"], zone)
        if end <= start:
            raise WorkshopError(f"{at}: end {item['end']!r} is not after start {item['start']!r}")
        warm = item["warm"]
        if not isinstance(warm, int) or isinstance(warm, bool) or warm < 0:
            raise WorkshopError(f"{at}.warm must be a whole number of spares (0 or more), not {warm!r}")
        windows.append(Window(start=start, end=end, warm=warm, label=f"{item['start']} to {item['end']}"))
    return sorted(windows, key=lambda w: w.start)
