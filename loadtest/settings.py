"""The knobs of a load test run, checked once, shared by the CLI and ``loadtest.run``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

DEFAULT_CELL = "print(6*7)"
DEFAULT_CELL_OUTPUT = "42"


class SettingsError(ValueError):
    """A setting has a value the run cannot use; the message names it and the value."""


def parse_arrival(text: str) -> float:
    """``burst`` -> 0.0; ``ramp:SECONDS`` -> SECONDS (the arrivals are spread over that many seconds)."""
    if text == "burst":
        return 0.0
    kind, sep, seconds = text.partition(":")
    if kind == "ramp" and sep:
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raise SettingsError(f"arrival must be 'burst' or 'ramp:SECONDS' (SECONDS >= 0), not {text!r}")


@dataclass
class Settings:
    """One run. Times are seconds; see ``python -m loadtest --help`` for what each means."""

    url: str
    users: int
    ramp: float = 0.0  # 0: burst (everyone at t=0); else arrivals spread evenly over this many seconds
    session_seconds: float = 30.0
    think: float = 3.0
    notebook: str | None = None  # path in the container's home, e.g. 01-python-introduction.ipynb
    walk_away: float = 0.0  # fraction of attendees that leave without shutting their kernel down
    retries: int = 0  # times /spawn is retried after 503 full / 429, waiting Retry-After each time
    request_timeout: float = 30.0
    spawn_timeout: float = 180.0  # the whole spawn phase, waiting line included
    kernel_timeout: float = 120.0  # kernel start, and each cell's execution
    poll_interval: float = 0.75  # between /api/queue polls while in line
    stats_interval: float = 1.0  # between /api/stats samples
    max_retry_after: float = 30.0  # longest Retry-After honoured before a retry
    assets: tuple[str, ...] = ()  # the page's static files (paths under its base URL), fetched as a browser does
    workshop: str | None = None  # a named workshop: its landing page, /spawn and /api/stats are under /w/<name>

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(f"URL must be http(s)://host[:port][/prefix], not {self.url!r}")
        if self.notebook is not None:
            self.notebook = self.notebook.strip("/")
            if self.notebook.startswith("notebooks/"):  # accept the /spawn path form too
                self.notebook = self.notebook[len("notebooks/"):]
            if not self.notebook:
                raise SettingsError("notebook must be a path such as 01-python-introduction.ipynb, not empty")
        if self.workshop is not None:
            self.workshop = self.workshop.strip("/")
            if not self.workshop or "/" in self.workshop or any(c.isspace() for c in self.workshop):
                raise SettingsError(f"workshop must be a workshop's name such as python-intro, not {self.workshop!r}")
        self.assets = tuple(self.assets)
        for path in self.assets:
            if not path or path.startswith("/") or "://" in path or any(c.isspace() for c in path):
                raise SettingsError(f"assets must be paths under the server's base URL like "
                                    f"static/notebook/main.js?v=1, not {path!r}")
        checks = [
            ("users", self.users, self.users >= 1, ">= 1"),
            ("ramp", self.ramp, self.ramp >= 0, ">= 0"),
            ("session_seconds", self.session_seconds, self.session_seconds >= 0, ">= 0"),
            ("think", self.think, self.think >= 0, ">= 0"),
            ("walk_away", self.walk_away, 0 <= self.walk_away <= 1, "between 0 and 1"),
            ("retries", self.retries, self.retries >= 0, ">= 0"),
            ("request_timeout", self.request_timeout, self.request_timeout > 0, "> 0"),
            ("spawn_timeout", self.spawn_timeout, self.spawn_timeout > 0, "> 0"),
            ("kernel_timeout", self.kernel_timeout, self.kernel_timeout > 0, "> 0"),
            ("poll_interval", self.poll_interval, self.poll_interval > 0, "> 0"),
            ("stats_interval", self.stats_interval, self.stats_interval > 0, "> 0"),
            ("max_retry_after", self.max_retry_after, self.max_retry_after >= 0, ">= 0"),
        ]
        for name, value, ok, rule in checks:
            if not ok:
                raise SettingsError(f"{name} must be {rule}, not {value!r}")

    def arrival(self, index: int) -> float:
        """When attendee ``index`` (0-based) clicks the link: all at 0, or evenly from 0 to ``ramp``."""
        if self.users == 1:
            return 0.0
        return self.ramp * index / (self.users - 1)

    def walks_away(self, index: int) -> bool:
        """Whether attendee ``index`` leaves without closing: ``walk_away`` of them, spread evenly."""
        return int((index + 1) * self.walk_away) > int(index * self.walk_away)

    @property
    def prefix(self) -> str:
        """The path the attendees' links start with: '/w/<workshop>', or '' for the service's one workshop."""
        return f"/w/{self.workshop}" if self.workshop else ""

    @property
    def arrival_text(self) -> str:
        return "burst" if self.ramp == 0 else f"ramp:{self.ramp:g}"

    def to_dict(self) -> dict:
        return {**asdict(self), "arrival": self.arrival_text}
