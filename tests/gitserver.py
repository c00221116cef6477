"""A real git server on this machine for the content tests and benchmark: ``git daemon`` on a free port of
127.0.0.1, serving the repositories under a folder, logging every request (so a test counts the fetches
that reached it). No network beyond loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

AUTHOR = {"GIT_AUTHOR_NAME": "Instructor", "GIT_AUTHOR_EMAIL": "instructor@example.org",
          "GIT_COMMITTER_NAME": "Instructor", "GIT_COMMITTER_EMAIL": "instructor@example.org"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GitServer:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log_path = root.parent / f"git-daemon-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["git", "daemon", "--reuseaddr", f"--base-path={self.root}", "--export-all", f"--port={self.port}",
             "--listen=127.0.0.1", "--verbose", "--informative-errors", str(self.root)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, self.log_path.read_text()
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def fetches(self, name: str) -> int:
        """Fetches of repository ``name`` the server was asked for (one 'upload-pack' request each)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return sum(1 for line in text.splitlines() if "upload-pack" in line and f"/{name}" in line)

    # --- repositories ------------------------------------------------------------------------

    def create(self, name: str, files: dict[str, bytes | str], branch: str = "main") -> str:
        repo = self.root / name
        subprocess.run(["git", "init", "-q", "-b", branch, str(repo)], check=True)
        return self.commit(name, files, "first")

    def commit(self, name: str, files: dict[str, bytes | str], message: str = "update") -> str:
        """Write ``files`` (None: delete) into the repository's work tree and commit: the new commit's id."""
        repo = self.root / name
        for path, data in files.items():
            target = repo / path
            if data is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data.encode() if isinstance(data, str) else data)
        env = {**os.environ, **AUTHOR}
        subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True, env=env)
        subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", message], check=True, env=env)
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, env=env,
                              capture_output=True, text=True).stdout.strip()


def notebook(*sources: str) -> str:
    """A small notebook whose code cells hold ``sources``."""
    import json
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)
