"""The documentation's promises that can be checked without an engine: the site builds with warnings as errors,
every internal link and anchor leads somewhere, the generated references are what the code generates now, the
HTTP and log references match the code, the get-started commands exist, and the README stays a front page."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from spawner.configref import END, START

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()
sys.path.insert(0, str(DOCS / "tools"))

import metrics_reference  # noqa: E402


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the README, a front page

def test_readme_is_a_front_page_with_the_two_commands_first():
    assert README.count("\n") <= 200, f"the README has {README.count(chr(10))} lines: move the detail into docs/"
    head = README[:1500]
    assert "make run" in head and "make test" in head


def test_readme_links_into_the_docs_lead_somewhere():
    links = re.findall(r"\]\(((?:docs/)[^)#\s]+)(?:#([^)\s]+))?\)", README)
    assert links, "the README links into the documentation"
    for target, anchor in links:
        path = ROOT / target
        assert path.exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in heading_slugs(path.read_text()), f"README links to {target}#{anchor}: no such heading"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# ------------------------------------------------------------------ the site builds, and its links hold

class Links(HTMLParser):
    """Every id, link and image source of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("img", "script") and attrs.get("src"):
            self.links.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = run("-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(DOCS), str(out), timeout=300)
    assert done.returncode == 0, f"the documentation does not build cleanly:\n{done.stderr[-4000:]}"
    return out


def test_the_site_builds_with_warnings_as_errors(site):
    for page in ("index", "get-started", "workshop/index", "scale/index", "embed/index", "reference/index",
                 "reference/configuration", "reference/http", "reference/metrics", "reference/logs",
                 "explanation/index", "measured/index", "develop/index"):
        assert (site / f"{page}.html").exists(), page


def test_every_internal_link_and_anchor_of_the_site_leads_somewhere(site):
    pages = {page: Links() for page in site.rglob("*.html") if "_static" not in page.relative_to(site).parts}
    for page, parsed in pages.items():
        parsed.feed(page.read_text())
    broken = []
    for page, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("mailto:", "javascript:")):
                continue  # another site: not checked offline
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {link} (no such file)")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if parts.fragment not in ids:
                    broken.append(f"{page.relative_to(site)}: {link} (no such anchor)")
    assert not broken, "\n".join(broken[:40])


def test_every_page_is_in_a_table_of_contents(site):
    # Sphinx warns of an orphan page (the build above fails on it); here, that every Markdown file is a page.
    sources = {p.relative_to(DOCS).with_suffix("").as_posix() for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    built = {p.relative_to(site).with_suffix("").as_posix() for p in site.rglob("*.html")}
    assert sources <= built, sources - built


# ------------------------------------------------------------------ generated references

def reference() -> str:
    """The reference as the application generates it (start.py; no package imports the application)."""
    done = run(str(ROOT / "start.py"), "--config-reference", "-", timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.rstrip("\n")


def test_configuration_reference_is_current():
    page = (DOCS / "reference" / "configuration.md").read_text()
    section = page[page.index(START):page.index(END) + len(END)]
    assert section == reference(), "run: make docs"


def test_metrics_reference_is_current():
    page = (DOCS / "reference" / "metrics.md").read_text()
    start, end = metrics_reference.START, metrics_reference.END
    assert page[page.index(start):page.index(end) + len(end)] == metrics_reference.reference(), "run: make docs"


def test_every_setting_in_the_operator_config_exists():
    from traitlets.config import Config, PyFileConfigLoader

    config: Config = PyFileConfigLoader("nbpool_config.py", path=str(ROOT / "config")).load_config()
    documented = reference()  # every setting of every class the application configures
    for section, values in config.items():
        for name in values:
            assert f"`c.{section}.{name}`" in documented, f"c.{section}.{name} is not a setting"


# ------------------------------------------------------------------ references checked against the code

def route_form(pattern: str) -> str:
    """A handler's URL pattern in the HTTP reference's notation: groups as <…>, optional prefixes in []."""
    form = pattern.replace("(?:/w/[^/]+)?", "[/w/<>]").replace("(?:/hub/user-redirect)?", "[/hub/user-redirect]")
    form = re.sub(r"\(\)", "", form)              # an empty group (the handler's argument)
    form = re.sub(r"\([^)]*\)", "<>", form)       # a captured part
    form = form.replace("[^/]+", "<>").replace(".+", "<>").replace(".*", "<>")
    form = form.replace("\\.", ".").rstrip("?").rstrip("/") or "/"
    return form


def doc_forms(path: str) -> set[str]:
    """A path as the reference writes it, in the notation above: as written, and each optional part taken or
    left (a route may be one pattern with the optional prefix, or two); `/user/<id>/…` is its prefix too."""
    form = re.sub(r"<[^>]*>", "<>", path).replace("/…", "/<>")
    forms = {form}
    for part in re.findall(r"\[[^\]]*\]", form):
        forms |= {f.replace(part, "") for f in forms} | {f.replace(part, part[1:-1]) for f in forms}
    forms |= {f.removesuffix("/<>") for f in forms if f.endswith("/<>")}
    return {f.rstrip("/") or "/" for f in forms}


def test_every_route_the_application_serves_is_in_the_http_reference():
    from spawner.web import application as app

    makers = [getattr(app, name) for name in dir(app) if name.endswith("_handlers")]
    routes = {route_form(spec[0]) for make in makers for spec in make()}
    assert len(routes) > 50
    page = (DOCS / "reference" / "http.md").read_text()
    documented = set().union(*(doc_forms(p) for p in re.findall(r"^\| `([^`]+)` \|", page, re.M)))
    assert not routes - documented, f"routes missing from docs/reference/http.md: {sorted(routes - documented)}"


def test_every_log_line_in_the_reference_is_in_the_code():
    source = "".join(p.read_text() for d in ("spawner", "proxy") for p in (ROOT / d).rglob("*.py"))
    source += (ROOT / "start.py").read_text()
    source = re.sub(r'"\s*\n\s*f?"', "", source)                       # adjacent string literals, joined
    source = re.sub(r"%[-0-9.]*[sdrfg]|\{[^}]*\}", "…", source)        # placeholders, as the page writes them
    page = (DOCS / "reference" / "logs.md").read_text()
    lines = re.findall(r"^\| `([^`]+)` \|", page, re.M)
    assert len(lines) > 20
    for line in lines:
        for fragment in (f.strip() for f in line.split("…")):
            assert len(fragment) < 4 or fragment in source, f"{line!r}: {fragment!r} is not in the code any more"


def commands(text: str) -> list[str]:
    """Shell commands a page shows: lines of its sh/console blocks, and inline code that starts with one."""
    found = []
    for lang, block in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
        if lang in ("sh", "console", "bash"):
            found += [line.lstrip("$ ").split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    found += re.findall(r"`((?:make|\.venv/bin/python|python) [^`]+)`", text)
    return [c for c in found if c and not c.startswith("#")]


def test_every_command_the_get_started_page_shows_exists():
    page = (DOCS / "get-started.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    help_all = run(str(ROOT / "start.py"), "--help-all", timeout=60).stdout
    checked = 0
    for command in commands(page) + commands(README):
        words = shlex.split(command.replace("<", "").replace(">", ""))
        options: list[str] = []
        if words[0] == "make":
            assert words[1] in targets, f"{command!r}: make has no target {words[1]!r}"
            options += [o for w in words[2:] if w.startswith("ARGS=") for o in shlex.split(w[5:])]
        elif words[0].endswith("python"):
            if words[1] == "-m":
                assert importlib.util.find_spec(words[2]), f"{command!r}: no module {words[2]}"
            else:
                assert (ROOT / words[1]).exists(), f"{command!r}: no {words[1]}"
                if words[1] == "start.py":
                    options += words[2:]
        else:
            continue  # git, curl, kill: not ours
        for option in (o.split("=")[0] for o in options if o.startswith("--")):
            assert option in help_all, f"{command!r}: start.py has no option {option}"
        checked += 1
    assert checked >= 5


# ------------------------------------------------------------------ pictures

def test_every_picture_the_docs_show_exists_and_a_browser_test_takes_it():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_browser*.py"))
    shown = set()
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md"]:
        shown |= set(re.findall(r"screenshots/([a-z0-9-]+)\.png", page.read_text()))
    assert shown, "the docs show the pages"
    for name in shown:
        assert (DOCS / "screenshots" / f"{name}.png").exists(), f"docs/screenshots/{name}.png is missing"
        assert re.search(rf'shoot\([^()]*"{name}"\)', tests), f"no browser test takes {name}.png"


def heading_slugs(markdown: str) -> set[str]:
    """The anchors MyST (and GitHub) give a page's headings."""
    slugs, fence = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return slugs
