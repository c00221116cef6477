"""The notebooks a rehearsal runs: read from files or folders, checked before anything is sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

SKIPPED_FOLDERS = (".ipynb_checkpoints", "__pycache__")


class MaterialError(ValueError):
    """A notebook cannot be rehearsed; the message names the file and what is wrong with it."""


@dataclass(frozen=True)
class Cell:
    index: int  # its place among all the notebook's cells, from 0 (as Jupyter and the class view count)
    cell_id: str | None  # nbformat 4.5's id: the kernel is told which cell runs, as a browser tells it
    code: str


@dataclass(frozen=True)
class Notebook:
    path: str  # where it is (or goes) in the container, relative to the home folder, with '/'
    kernel: str  # the kernelspec its metadata names
    cells: tuple[Cell, ...]  # its code cells, in order (empty ones left out)
    content: dict  # the whole notebook, to upload where the container lacks it


def read_material(paths: list[str]) -> list[Notebook]:
    """The notebooks named: a file as itself (its name at the top of the home folder), a folder as every
    notebook under it (the same folders inside the home folder), in name order. Raises ``MaterialError``."""
    if not paths:
        raise MaterialError("name at least one notebook or folder to rehearse")
    notebooks: list[Notebook] = []
    for given in paths:
        where = Path(given)
        if where.is_dir():
            found = sorted(p for p in where.rglob("*.ipynb")
                           if not any(part.startswith(".") or part in SKIPPED_FOLDERS
                                      for part in p.relative_to(where).parts))
            if not found:
                raise MaterialError(f"{given}: no notebook (*.ipynb) in this folder")
            notebooks += [read_notebook(p, PurePosixPath(*p.relative_to(where).parts).as_posix()) for p in found]
        elif where.is_file():
            notebooks.append(read_notebook(where, where.name))
        else:
            raise MaterialError(f"{given}: no such file or folder")
    seen: set[str] = set()
    for nb in notebooks:
        if nb.path in seen:
            raise MaterialError(f"two notebooks would go to {nb.path} in the container: name one of them only")
        seen.add(nb.path)
    runnable = [nb for nb in notebooks if nb.cells]
    if not runnable:
        raise MaterialError(f"none of {', '.join(nb.path for nb in notebooks)} has a code cell to run")
    return runnable


def read_notebook(file: Path, path: str) -> Notebook:
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MaterialError(f"{file}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise MaterialError(f"{file}: not a notebook (not JSON: {exc})") from None
    if not isinstance(content, dict) or not isinstance(content.get("cells"), list) or content.get("nbformat") != 4:
        raise MaterialError(f"{file}: not a notebook in nbformat 4 (a JSON object with 'cells' and nbformat 4)")
    cells = []
    for index, cell in enumerate(content["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        code = "".join(source) if isinstance(source, list) else str(source)
        if code.strip():
            cells.append(Cell(index, cell.get("id") if isinstance(cell.get("id"), str) else None, code))
    spec = (content.get("metadata") or {}).get("kernelspec") or {}
    kernel = spec.get("name") if isinstance(spec, dict) and isinstance(spec.get("name"), str) else "python3"
    return Notebook(path, kernel, tuple(cells), content)
