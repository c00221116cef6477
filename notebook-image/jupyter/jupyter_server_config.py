"""Jupyter Server settings for nbpool workshop containers.

Base URL, port and token come from the orchestrator at start (see
start-notebook.sh); everything else an attendee's server needs is fixed here.
"""

import os
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

# Real-time collaboration with server-side execution: the notebook lives on the server as a shared
# document (jupyter-collaboration) and cells run there (jupyter-server-nbmodel: the page sends
# "POST api/kernels/<id>/execute" and the server writes the outputs into the document), so a
# running cell's output is kept with no browser connected and shows after a reload or a dropped
# network. NBPOOL_COLLABORATION=0 turns all of it off: plain Jupyter, the kernel WebSocket executes.
# The pages' extensions are switched with it by start-notebook.sh (a labconfig/page_config.json).
COLLABORATION = os.environ.get("NBPOOL_COLLABORATION", "1").strip().lower() not in ("0", "false", "no", "off")
c.ServerApp.jpserver_extensions.update({
    "jupyter_server_ydoc": COLLABORATION,
    "jupyter_server_fileid": COLLABORATION,
    "jupyter_server_nbmodel": COLLABORATION,
})
if COLLABORATION:
    # The collaboration's own state stays out of the home directory, which nbpool keeps as the
    # attendee's work. start-notebook.sh creates the folder (made here too for a server started otherwise).
    COLLAB_STATE = "/tmp/nbpool-collab"
    os.makedirs(COLLAB_STATE, mode=0o700, exist_ok=True)
    c.SQLiteYStore.db_path = f"{COLLAB_STATE}/jupyter_ystore.db"
    c.YDocExtension.session_store_path = f"{COLLAB_STATE}/collaboration_sessions.json"
    c.BaseFileIdManager.db_path = f"{COLLAB_STATE}/file_id_manager.db"
    # Keep a document on the server after its last tab closed (the default drops it 60 s later, and
    # with it the outputs of a cell still running).
    c.YDocExtension.document_cleanup_delay = None
    # Write the live document to its file once it has been quiet for half a second (default 1 s):
    # nbpool reads the file through the contents API to show an instructor's notebook live. It is a
    # debounce: while changes keep coming faster than that (a cell printing several lines a second),
    # the file waits until they pause.
    c.YDocExtension.document_save_delay = 0.5

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
# Attendees do not install JupyterLab extensions (the image's are fixed): the read-only extension
# manager lists them without the PyPI manager's HTTP client (httpx/httpcore imported and set up at
# every start, in every container, collaboration on or off).
c.LabApp.extension_manager = "readonly"

# A spare keeps one Python kernel running, handed to its attendee's first Python
# notebook so the first cell does not wait for a kernel to start; other kernels,
# and later Python notebooks, start as usual. NBPOOL_PRESTART_KERNEL=0 (the
# orchestrator's DockerBackend.prestart_kernel) turns it off. See nbpool_kernels.py.
# (nbpool's modules, among them nbpool_notice: its notices to the attendee, loaded above.)
sys.path.insert(0, "/usr/local/lib/nbpool")
c.ServerApp.kernel_manager_class = "nbpool_kernels.PrestartKernelManager"
# A shared document keeps reaching its file while it keeps changing (a cell printing progress), not only
# once it is quiet. See nbpool_saves.py.
if COLLABORATION:
    import nbpool_saves

    nbpool_saves.install()
# Each kernel message leaves at once, not up to 40 ms later behind the previous
# one's delayed acknowledgement. See nbpool_websocket.py.
c.ServerApp.kernel_websocket_connection_class = "nbpool_websocket.NoDelayKernelConnection"
# The user is the person nbpool's proxy names in the X-Nbpool-User header (collaborators see each
# other by name); without it, Jupyter's stock anonymous user. See nbpool_identity.py.
c.ServerApp.identity_provider_class = "nbpool_identity.HeaderIdentityProvider"
