"""Jupyter Server settings for nbpool workshop containers.

Base URL, port and token come from the orchestrator at start (see
start-notebook.sh); everything else an attendee's server needs is fixed here.
"""

import sys

c = get_config()  # noqa: F821 -- injected by Jupyter's config loader

# Reached only through the nbpool proxy, on the container's own interface.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = True
# The proxy sets X-Forwarded-For/-Proto/-Host: trust them so redirects and
# websocket origin checks see the attendee's scheme and host.
c.ServerApp.trust_xheaders = True
# An attendee must not shut their own server down by accident: no quit
# button or "Shut Down" menu entry in Notebook 7 or JupyterLab.
c.ServerApp.quit_button = False
# Language-server support needs servers this image does not have; loading the
# extension only costs start-up time.
c.ServerApp.jpserver_extensions = {"jupyter_lsp": False, "nbpool_notice": True}

# Land on the file browser that shows the workshop notebooks.
c.ServerApp.default_url = "/tree"
c.ServerApp.root_dir = "/home/jovyan"

# Branding: ~/.jupyter/custom/custom.css and its logo, in Notebook 7 and /lab.
c.JupyterNotebookApp.custom_css = True
c.LabApp.custom_css = True

# The container has no reason to call home: no news feed, no update checks,
# and no pop-up asking the attendee about either.
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"

# A spare keeps one Python kernel running, handed to its attendee's first Python
# notebook so the first cell does not wait for a kernel to start; other kernels,
# and later Python notebooks, start as usual. NBPOOL_PRESTART_KERNEL=0 (the
# orchestrator's DockerBackend.prestart_kernel) turns it off. See nbpool_kernels.py.
# (nbpool's modules, among them nbpool_notice: its notices to the attendee, loaded above.)
sys.path.insert(0, "/usr/local/lib/nbpool")
c.ServerApp.kernel_manager_class = "nbpool_kernels.PrestartKernelManager"
# Each kernel message leaves at once, not up to 40 ms later behind the previous
# one's delayed acknowledgement. See nbpool_websocket.py.
c.ServerApp.kernel_websocket_connection_class = "nbpool_websocket.NoDelayKernelConnection"
