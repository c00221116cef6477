"""A kernel manager that keeps one Python kernel running for the attendee's first notebook.

A spare container sits idle until someone is handed it; the attendee then opens
a notebook and, with the stock server, waits for a Python kernel to start
(nearly all of the first cell's 0.7 s; benchmarks/first_cell.py). ``PrestartKernelManager`` starts
one kernel of the default kernel name in the background once the server's
event loop runs, keeps it out of the kernel list, and hands it to the first
``start_kernel`` for that name: the attendee's first notebook session. Before
handing it over it moves the kernel to the notebook's directory and sets what
the server sets per session (``JPY_SESSION_NAME``, ``__session__``), so relative
paths and restarts behave as with a kernel started for that notebook. Every
other start, and every start after the first, is the stock behaviour.

Switched by the environment variable NBPOOL_PRESTART_KERNEL ("1", the default:
on; "0": off), or ``c.PrestartKernelManager.prestart`` in the server's config.
Loaded by jupyter_server_config.py as ``c.ServerApp.kernel_manager_class``.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from queue import Empty
from typing import Any

from jupyter_server._tz import utcnow
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from tornado.ioloop import IOLoop
from traitlets import Bool, Float, TraitError, default

OFF_VALUES = ("0", "false", "no", "off")

# Run silently (no execution count, no history, no output) in the pre-started kernel
# when it is handed over: the same directory, environment and session name a kernel
# started for this notebook would have had. Everything lives in a function that is
# deleted again, so the attendee's namespace holds nothing of it.
HANDOVER_CODE = """\
def _nbpool_handover(cwd, env):
    import os
    from pathlib import Path
    os.chdir(cwd)
    os.environ.update(env)
    shell = get_ipython()
    if "JPY_SESSION_NAME" in env:
        shell.user_ns["__session__"] = env["JPY_SESSION_NAME"]
    history = getattr(shell, "history_manager", None)
    if history is not None:
        history.dir_hist[:] = [Path.cwd()]  # _dh, as IPython starts it
_nbpool_handover({cwd!r}, {env!r})
del _nbpool_handover
"""


class PrestartKernelManager(AsyncMappingKernelManager):
    """Jupyter Server's kernel manager, with one kernel of the default name started ahead of need."""

    prestart = Bool(config=True,
                    help="Start one kernel of the default kernel name when the server starts, and give it "
                         "to the first notebook that asks for that kernel. Default: the environment variable "
                         "NBPOOL_PRESTART_KERNEL ('0' turns it off; anything else, or unset, on).")
    prestart_timeout = Float(60.0, config=True,
                             help="Seconds the pre-started kernel may take to answer (at start, and to the "
                                  "hand-over); past that it is shut down and notebooks start kernels as usual.")

    @default("prestart")
    def _default_prestart(self) -> bool:
        return os.environ.get("NBPOOL_PRESTART_KERNEL", "1").strip().lower() not in OFF_VALUES

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        # The pre-started kernel's id from before its launch until it is handed over,
        # shut down or found dead: it is hidden from the kernel list and the culler meanwhile.
        self._spare_id: str | None = None
        # Resolves to that id once the kernel answers (None if it failed); taken, and so
        # set to None, by the one start_kernel that may use it.
        self._spare: asyncio.Future[str | None] | None = None
        if self.prestart:
            # The server's loop is not running yet: this runs once it is, after the HTTP
            # socket was bound (that callback is queued before the task's first step).
            loop = getattr(self.parent, "io_loop", None) or IOLoop.current()
            loop.add_callback(self._begin_prestart)
        else:
            self.log.info("nbpool: kernel pre-start is off; every notebook starts its own kernel")

    def _begin_prestart(self) -> None:
        self._spare = asyncio.ensure_future(self._prestart())

    async def _prestart(self) -> str | None:
        """Start the spare kernel and wait until it answers; its id, or None when it could not start."""
        name = self.default_kernel_name
        try:
            spec = self.kernel_spec_manager.get_kernel_spec(name)
        except Exception as exc:
            self.log.warning("nbpool: no kernel pre-started: kernel %r is not available (%s)", name, exc)
            return None
        if (spec.language or "").lower() != "python":
            # The hand-over runs Python code in the kernel.
            self.log.info("nbpool: no kernel pre-started: the default kernel %r is not a Python kernel", name)
            return None
        started = time.monotonic()
        kernel_id = self._spare_id = str(uuid.uuid4())
        try:
            # No path: the server's own directory (root_dir), as for a kernel started without one.
            # The environment is passed so the hand-over can update it for restarts.
            await super()._async_start_kernel(kernel_id=kernel_id, kernel_name=name, env=dict(os.environ))
            await self._request(kernel_id, "kernel_info", lambda client: client.kernel_info())
            # Run the hand-over's code once now, where it changes nothing: a kernel's first execution
            # costs it twice as long as later ones, and this one is then not on the attendee's clock.
            await self._execute_silently(kernel_id, os.getcwd(), {})
        except Exception as exc:
            self.log.warning("nbpool: the pre-started %s kernel did not start (%s); notebooks will start "
                             "their own", name, exc)
            await self._discard(kernel_id)
            return None
        self.log.info("nbpool: pre-started %s kernel %s is ready (%.2f s)", name, kernel_id,
                      time.monotonic() - started)
        return kernel_id

    async def _request(self, kernel_id: str, what: str, send) -> dict:
        """Send one shell request with ``send(client)`` and return its reply; raise past prestart_timeout."""
        client = self.get_kernel(kernel_id).client()
        client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        shell = client.shell_channel
        deadline = time.monotonic() + self.prestart_timeout
        try:
            msg_id = send(client)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no {what} reply within {self.prestart_timeout:.0f} s")
                try:
                    reply = await client.get_shell_msg(timeout=min(remaining, 1.0))
                except Empty:
                    if not await self.get_kernel(kernel_id).is_alive():
                        raise RuntimeError(f"the kernel died before its {what} reply") from None
                    continue
                if reply["parent_header"].get("msg_id") == msg_id:
                    if reply["content"].get("status") != "ok":
                        content = reply["content"]
                        raise RuntimeError(f"{what}: {content.get('ename')}: {content.get('evalue')}")
                    return reply
        finally:
            shell.close()  # not stop_channels(), which would first open the channels it was not given

    async def _execute_silently(self, kernel_id: str, cwd: str, env: dict[str, str]) -> None:
        """Run HANDOVER_CODE for ``cwd`` and ``env`` in the kernel; raise if it fails or does not answer."""
        code = HANDOVER_CODE.format(cwd=cwd, env=env)
        await self._request(kernel_id, "execute", lambda client: client.execute(
            code, silent=True, store_history=False, allow_stdin=False, stop_on_error=False))

    async def _discard(self, kernel_id: str) -> None:
        """Forget the spare kernel and shut it down if it is still there (errors only logged)."""
        self._spare_id = None
        if kernel_id in self or kernel_id in self._pending_kernels:
            try:
                await self.shutdown_kernel(kernel_id, now=True)
            except Exception as exc:
                self.log.warning("nbpool: shutting the pre-started kernel down failed: %s", exc)

    async def _hand_over(self, spare: asyncio.Future, path: str | None, env: dict | None) -> str | None:
        """Give the spare kernel to a new session in ``path``; its id, or None to start a kernel as usual."""
        try:
            kernel_id = await spare  # still starting: its head start is kept, the wait is shorter than a start
        except Exception:
            self.log.exception("nbpool: pre-starting a kernel failed")
            return None
        if kernel_id is None:
            return None
        if kernel_id not in self or not await self.get_kernel(kernel_id).is_alive():
            self.log.warning("nbpool: the pre-started kernel %s is gone; starting a new one", kernel_id)
            await self._discard(kernel_id)
            return None
        km = self.get_kernel(kernel_id)
        launch = km._launch_args if isinstance(km._launch_args, dict) else {}
        # Where a kernel started for this session would run: the notebook's directory, or the
        # server's own without a path (the spare was started there).
        cwd = self.cwd_for_path(path) if path is not None else os.getcwd()
        launched_env = launch.get("env") or {}
        changed = {k: v for k, v in (env or {}).items() if launched_env.get(k) != v}
        try:
            if cwd != os.getcwd() or changed:
                await self._execute_silently(kernel_id, cwd, changed)
        except Exception as exc:
            self.log.warning("nbpool: the pre-started kernel %s could not be handed over (%s); starting a "
                             "new one", kernel_id, exc)
            await self._discard(kernel_id)
            return None
        # A restart (Kernel > Restart) relaunches with these: the notebook's, as for a fresh start.
        launch["cwd"] = cwd
        if env:
            km.update_env(env=env)
        if km.provisioner is not None and hasattr(km.provisioner, "cwd"):
            km.provisioner.cwd = cwd
        km.last_activity = utcnow()
        self._spare_id = None  # listed, and culled, like any other kernel from now on
        self.log.info("nbpool: handed the pre-started %s kernel %s to a new session (in %s)",
                      km.kernel_name, kernel_id, path or "/")
        return kernel_id

    async def _async_start_kernel(self, *, kernel_id: str | None = None, path: str | None = None,
                                  **kwargs: Any) -> str:
        """Start a kernel as Jupyter Server does, or hand over the pre-started one; return the kernel's id.

        Only the first start of the default kernel name, without a client-chosen id, takes the
        pre-started kernel; from then on every start is the stock one.
        """
        name = kwargs.get("kernel_name") or self.default_kernel_name
        if self._spare is not None and kernel_id is None and name == self.default_kernel_name:
            spare, self._spare = self._spare, None  # taken before any await: one session gets it
            handed = await self._hand_over(spare, path, kwargs.get("env"))
            if handed is not None:
                if not self._initialized_culler:
                    self.initialize_culler()
                return handed
        return await super()._async_start_kernel(kernel_id=kernel_id, path=path, **kwargs)

    start_kernel = _async_start_kernel

    def list_kernels(self) -> list[dict]:
        """The running kernels' models, without the pre-started kernel until it is handed over.

        The spare is skipped before its model is made. A kernel is registered a few milliseconds
        before its last_activity is set, and making its model in between fails: api/status (the
        pool's readiness check) answered 500 about once in a thousand polls while the spare
        started (measured). Any other kernel caught in that moment is left out of this one list,
        as Jupyter Server's own loop leaves out one that vanished.
        """
        kernels = []
        for kernel_id in self.pinned_superclass.list_kernel_ids(self):
            if kernel_id == self._spare_id:
                continue
            try:
                kernels.append(self.kernel_model(kernel_id))
            except (web.HTTPError, KeyError, TraitError):
                pass
        return kernels

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        """Cull as the server does, except the pre-started kernel, idle by design until handed over."""
        if kernel_id == self._spare_id and getattr(self.get_kernel(kernel_id), "execution_state", None) != "dead":
            return
        await super().cull_kernel_if_idle(kernel_id)
