"""Sphinx configuration of nbpool's documentation (make docs; built offline, warnings are errors).

Sphinx with MyST and the PyData theme, as JupyterHub and BinderHub publish theirs: the pages are Markdown that
reads well on GitHub too, and the same tools are what this field's operators already know.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from spawner import __version__  # noqa: E402

project = "nbpool"
author = "the nbpool team"
copyright = "2026, the nbpool team"
release = version = __version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 4          # links to any heading down to ####, checked at build time
suppress_warnings: list[str] = []  # none: every warning is an error in make docs
nitpicky = True

html_theme = "pydata_sphinx_theme"
html_title = "nbpool"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 7,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "get-started": []}  # single pages: no section to navigate
html_last_updated_fmt = None
html_show_sourcelink = False
