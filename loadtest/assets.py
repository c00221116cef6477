"""Record the static files a notebook page loads, with a real browser, for ``python -m loadtest --assets``.

    python -m loadtest.assets URL [--out assets.txt]

URL is a notebook page a browser can open as it is, e.g. a container's
``http://127.0.0.1:32768/user/<id>/notebooks/01-python-introduction.ipynb?token=...``.
Chromium (``NBPOOL_CHROMIUM``, default Debian's ``/usr/bin/chromium``) opens
it and waits for the notebook to show; every GET under the page's base URL
that is one of the server's static files (``static/``, ``lab/extensions/``,
``custom/``) is written out, one path under the base URL per
line, in the order the browser asked. Most of them (webpack's chunks) are
only known by running the page's JavaScript, which the load tester does not.
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit

CHROMIUM = os.environ.get("NBPOOL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]
STATIC = ("static/", "lab/extensions/", "custom/")


def base_of(url: str) -> str:
    """'http://h/user/abc/notebooks/x.ipynb?token=t' -> 'http://h/user/abc/'."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    prefix = "/".join(segments[:3]) + "/" if len(segments) > 3 and segments[1] == "user" else "/"
    return f"{parts.scheme}://{parts.netloc}{prefix}"


def record(url: str, timeout_ms: int = 120_000) -> list[str]:
    from playwright.sync_api import sync_playwright

    base = base_of(url)
    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        page.set_default_timeout(timeout_ms)

        def on_request(request) -> None:
            if request.method == "GET" and request.url.startswith(base):
                path = request.url[len(base):]
                if path.startswith(STATIC) and path not in seen:
                    seen.append(path)

        page.on("request", on_request)
        page.goto(url)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible")
        page.wait_for_load_state("networkidle")
        browser.close()
    return seen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.assets", description=__doc__.splitlines()[0])
    parser.add_argument("url", metavar="URL", help="a notebook page a browser can open as it is (token included)")
    parser.add_argument("--out", help="write the list here (default: standard output)")
    args = parser.parse_args(argv)
    paths = record(args.url)
    text = "".join(f"{p}\n" for p in paths)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
        print(f"{len(paths)} static files written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0 if paths else 1


if __name__ == "__main__":
    sys.exit(main())
