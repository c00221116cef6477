#!/bin/sh
# Start the notebook server for one attendee. The orchestrator supplies, as
# environment or as extra arguments (which win):
#   NBPOOL_BASE_URL   the URL prefix the proxy routes here, e.g. /user/abc123/
#   JUPYTER_TOKEN     the server's token (read by Jupyter Server itself)
#   JUPYTER_PORT      the port to listen on (default 8888)
# exec: tini must signal the server itself, not this shell.
exec jupyter notebook \
    --ServerApp.base_url="${NBPOOL_BASE_URL:-/}" \
    --ServerApp.port="${JUPYTER_PORT:-8888}" \
    "$@"
