"""A 1 GiB download to a slow client: the proxy holds back its backend instead of buffering."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.resources import echo
from tests.resources.slow_client import slow_read
from tests.service import vm_kib

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30


async def start_proxy_process(*args: str) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--port", "0", "--log-level", "INFO", *args,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), 20)).decode()
        if not line:
            raise RuntimeError("the proxy exited before listening")
        if "proxy listening on" in line:
            return proc, int(line.rsplit(":", 1)[1].split()[0])


@pytest.mark.slow
async def test_one_gib_to_a_slow_client_keeps_memory_bounded():
    backend = await echo.start()
    proc, port = await start_proxy_process("--default-target", backend.url)
    try:
        baseline = vm_kib(proc.pid, "VmRSS")
        # The backend could send at well over 1 GiB/s; the client reads 160 MiB/s.
        result = await slow_read(f"http://127.0.0.1:{port}/bytes/{GIB}", rate=160 * 2**20,
                                 read_size=256 * 1024, timeout=120)
        peak = vm_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        await proc.wait()
        await backend.stop()
    assert result.status == 200
    assert result.body_bytes == GIB and result.complete
    assert result.sha256 == echo.pattern_sha256(GIB)
    # Without backpressure the proxy would hold most of the gigabyte; with it,
    # only socket buffers' worth. Allow generous slack for the interpreter.
    growth_mib = (peak - baseline) / 1024
    assert growth_mib < 48, f"proxy memory grew {growth_mib:.0f} MiB relaying 1 GiB"
