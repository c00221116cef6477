"""Files into a container through the engine: one tar, owned by the container's user."""

from __future__ import annotations

import io
import tarfile
import time

HOME = "/home/jovyan"  # the image's home folder, where the notebook server's root is


def home_archive(folder: str, files: dict[str, bytes], user: str) -> bytes:
    """A tar of ``files`` under ``folder`` (relative to HOME), its folders included, owned by ``user``
    (uid[:gid]): what the attendee can then edit and delete as their own."""
    uid, _, gid = user.partition(":")
    owner = {"uid": int(uid), "gid": int(gid or uid), "mtime": int(time.time())}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        for path in sorted(files):
            full = f"{folder}/{path}" if folder else path
            parts = full.split("/")
            for i in range(1, len(parts)):
                name = "/".join(parts[:i])
                if name not in made:
                    made.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    info.uid, info.gid, info.mtime = owner["uid"], owner["gid"], owner["mtime"]
                    tar.addfile(info)
            info = tarfile.TarInfo(full)
            info.size, info.mode = len(files[path]), 0o644
            info.uid, info.gid, info.mtime = owner["uid"], owner["gid"], owner["mtime"]
            tar.addfile(info, io.BytesIO(files[path]))
    return buffer.getvalue()
