#!/bin/sh
# Start the notebook server for one attendee. The orchestrator supplies, as
# environment or as extra arguments (which win):
#   NBPOOL_BASE_URL       the URL prefix the proxy routes here, e.g. /user/abc123/
#   JUPYTER_TOKEN         the server's token (read by Jupyter Server itself)
#   JUPYTER_PORT          the port to listen on (default 8888)
#   NBPOOL_COLLABORATION  "1" (default) real-time collaboration with server-side execution;
#                         "0" plain Jupyter (read here and by jupyter_server_config.py)

# The collaboration's state (its document store, sessions and file ids) lives here, out of the
# home directory that nbpool keeps as the attendee's work.
STATE=/tmp/nbpool-collab
mkdir -p -m 700 "$STATE"
case "$(printf '%s' "${NBPOOL_COLLABORATION:-1}" | tr -d ' ' | tr 'A-Z' 'a-z')" in
    0|false|no|off)
        # Off: JupyterLab and Notebook load none of the collaboration's page extensions (its
        # document provider, collaborators panel and the server-side cell executor), so the pages
        # are the stock ones and cells run over the kernel WebSocket. A page_config.json in a
        # labconfig folder on the config path is how Jupyter disables page extensions; disabling
        # the packages also drops what they disable (the stock cell executor comes back).
        mkdir -p "$STATE/config/labconfig"
        cat >"$STATE/config/labconfig/page_config.json" <<'EOF'
{
  "disabledExtensions": {
    "@jupyter/collaboration-extension": true,
    "@jupyter/docprovider-extension": true,
    "@datalayer/jupyter-server-nbmodel": true
  }
}
EOF
        JUPYTER_CONFIG_PATH="$STATE/config${JUPYTER_CONFIG_PATH:+:$JUPYTER_CONFIG_PATH}"
        export JUPYTER_CONFIG_PATH
        ;;
esac

# exec: tini must signal the server itself, not this shell. jupyter-notebook, not `jupyter notebook`:
# the `jupyter` command is itself a Python program that only finds jupyter-notebook and execs it,
# one more interpreter start and jupyter_core import (about 0.07 CPU-seconds) in every container.
exec jupyter-notebook \
    --ServerApp.base_url="${NBPOOL_BASE_URL:-/}" \
    --ServerApp.port="${JUPYTER_PORT:-8888}" \
    "$@"
