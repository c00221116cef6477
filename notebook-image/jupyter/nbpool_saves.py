"""The live document reaches its file at least every MAX_WAIT (plus the save delay), even while it keeps changing.

jupyter-collaboration writes a shared document to its file ``document_save_delay``
seconds after the last change: a debounce. While a cell keeps printing (a loop
reporting progress every half second), every new output puts the write off
again, so the file (and whatever reads it: nbpool's follow view of the
instructor's notebook, kept work's checkpoints) stays as it was until the cell
goes quiet. Here, once changes have kept coming for MAX_WAIT seconds, the save
already waiting is no longer put off: it writes the document as it is when it
runs, and the changes that came meanwhile are saved by the next one, scheduled
when it ends. With a save delay of 0.5 s, a busy document is written about
every 1.5 s; a quiet one, as before, half a second after its last change.

``install()`` patches ``jupyter_server_ydoc``'s DocumentRoom before any room
exists (jupyter_server_config.py calls it when collaboration is on).
"""

from __future__ import annotations

import asyncio
import time

MAX_WAIT = 1.0  # seconds of changes after which the waiting save is kept


def install() -> None:
    from jupyter_server_ydoc.rooms import DocumentRoom

    if getattr(DocumentRoom, "_nbpool_saves", False):
        return
    debounced = DocumentRoom._on_document_change
    save = DocumentRoom._maybe_save_document

    def _on_document_change(self, target, event) -> None:
        now = time.monotonic()
        waiting = self._saving_document is not None and not self._saving_document.done()
        since = getattr(self, "_nbpool_changing_since", None)
        if not waiting or since is None:
            self._nbpool_changing_since = now
        elif now - since >= MAX_WAIT:
            self._nbpool_more = True  # the waiting save runs; the next one takes these changes
            return
        debounced(self, target, event)

    async def _maybe_save_document(self, saving_document, save_now: bool = False) -> None:
        await save(self, saving_document, save_now)
        if asyncio.current_task() is not self._saving_document or not getattr(self, "_nbpool_more", False):
            return  # (superseded by a newer save, or nothing came while this one waited)
        self._nbpool_more = False
        self._nbpool_changing_since = time.monotonic()
        self._saving_document = asyncio.create_task(self._maybe_save_document(None))

    DocumentRoom._on_document_change = _on_document_change
    DocumentRoom._maybe_save_document = _maybe_save_document
    DocumentRoom._nbpool_saves = True
