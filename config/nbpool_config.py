# nbpool configuration: read by `python start.py` (and `make run`).
#
# Change a value and send SIGHUP (`kill -HUP <pid>`) to apply it while the
# workshop runs: pool size, cap, limits, culling and image are applied live
# (a new image replaces the ready spares, never a container in use). Listening
# address, port and TLS files take effect at the next start.
#
# Every setting, with its help: `python start.py --help-all`.
# A fully commented file of all of them: `python start.py --generate-config`.

c = get_config()  # noqa: F821 -- provided by traitlets when this file is loaded

# --- the pool ------------------------------------------------------------------------
# Ready spare containers to keep. Each hand-out starts a replacement at once.
# About the number of attendees who arrive in the first half minute; each idle
# spare costs about 50 MiB of RAM. (A 2-core machine starts about one new
# container a second while attendees work; see docs/measured/burst.md.)
c.Pool.warm = 3

# Hard cap on all containers (spares + starting + in use). Plan RAM for it:
# DockerBackend.mem_limit x max_containers should fit in the machine's memory.
c.Pool.max_containers = 20

# Containers started at once (starting is CPU-bound: about 2 per core).
c.Pool.spawn_concurrency = 4

# Seconds a new container may take to answer before the start counts as failed.
c.Pool.start_timeout = 60

# --- culling ---------------------------------------------------------------------------
# An assigned container with no traffic for this many seconds is removed (0: never).
c.Pool.cull_idle = 600
# An assigned container is removed this many seconds after hand-out, active or not (0: never).
c.Pool.cull_max_age = 4 * 3600

# --- the image and limits ------------------------------------------------------------------
c.DockerBackend.image = "nbpool/notebook:latest"
# Memory per container (512M, 1G, ...). One kernel of each kind uses about 300 MiB.
c.DockerBackend.mem_limit = "1G"
# CPU cores per container (fractions allowed).
c.DockerBackend.cpu_limit = 1.0
# Processes and threads per container.
c.DockerBackend.pids_limit = 512
# Read-only data for every container: {"/srv/datasets": "/home/jovyan/data"}
# c.DockerBackend.volumes = {}
# A Python kernel waiting in every spare for its attendee's first notebook: the first
# cell answers in about 0.09 s instead of 0.7 s, for about 37 MiB per container.
c.DockerBackend.prestart_kernel = True

# --- the front door ----------------------------------------------------------------------
# Port and address of the public link (all interfaces by default).
c.Proxy.port = 8000
c.Proxy.ip = ""
# HTTPS: give both, and kernel WebSockets run over wss.
# c.Proxy.certfile = "/etc/ssl/workshop.pem"
# c.Proxy.keyfile = "/etc/ssl/workshop.key"

# Where a visitor lands in their server: "tree", "lab", or a first notebook.
c.WebApp.landing_path = "tree"
# c.WebApp.landing_path = "notebooks/01-python-introduction.ipynb"

# Branding of nbpool's own pages (the notebook UI's branding is in notebook-image/branding/).
c.WebApp.workshop_name = "Workshop notebooks"

# Spawns per client address per minute (a whole workshop may share one NAT address).
c.WebApp.spawn_rate_limit = 300

# --- on the open internet (docs/explanation/security.md) --------------------------
# An origin of its own for every attendee's server (<id>.nb.example.org; nbpool's pages at
# nb.example.org): DNS for both names, and with HTTPS a certificate for both. Unset: every
# server is a path of one origin, and a browser holds one notebook at a time.
# c.Proxy.subdomain_host = "nb.example.org"
# The largest share of max_containers one client network (an IPv6 /64) may hold at once, so
# a script cannot take every container; the last 20% go only to networks holding none yet.
# A room whose attendees all come through one NAT address (conference Wi-Fi) needs 1.0
# (which lifts the reserve too) -- then set a workshop_key.
c.WebApp.address_share = 0.5
c.WebApp.newcomer_reserve = 0.2
# A key the published link carries (https://host/?key=...); without it no notebook starts.
# c.WebApp.workshop_key = "choose-a-long-random-string"
# What containers may connect to: "internet" (everything but this machine and private
# networks; attendees can still pip install), "none", or "open" (no rules: your own firewall).
c.ContainerFirewall.egress = "internet"
# Disk space one attendee's own files may take, and the container log kept.
c.DockerBackend.disk_limit = "2G"
c.DockerBackend.log_max_size = "10M"
# Miners, CPU burners and scanners on a public link (docs/workshop/public-link.md): their
# sessions end and their browser and network are banned for ban_hours.
c.AbuseGuard.cpu_budget = 3600  # CPU-seconds per session
c.AbuseGuard.ban_hours = 24
# c.AbuseGuard.banned_commands = [..., "my-own-banned-tool"]
# c.AbuseGuard.egress_ports = "web"  # the internet on TCP 80, 443 and 9418 only
# c.AbuseGuard.webhook_url = "https://chat.example.org/hooks/..."  # told of every ban

# The class view for the teaching team (docs/workshop/class-view.md): /class on the
# status page; helpers get the link with the helper key (empty: one derived from the secret, shown there).
# c.WebApp.helper_key = "a-long-random-string-for-helpers"
c.ClassView.stuck_errors = 3  # failed runs in a row that make an attendee "stuck"
c.ClassView.stuck_minutes = 10  # or this long with runs but no success

# Admin API and status page (/status): empty generates one into data/admin_token.
# c.WebApp.admin_token = ""

# Token for POST /api/spawn, and origins allowed to call it from a browser.
# c.WebApp.api_token = ""
# c.WebApp.cors_origin = ["https://workshop.example.org"]

# --- attendees' work, and the report afterwards (docs/workshop/kept-work.md, report.md) ------
# Files an attendee created or changed are kept for them after their session ends
# (download, or continue in a fresh notebook). Tell attendees (see the privacy note in docs/workshop/kept-work.md).
c.WorkKeeper.enabled = True
c.WorkKeeper.keep_hours = 24          # then deleted
c.WorkKeeper.keep_interval = 300      # seconds between checkpoints (what a crash can lose)
c.WorkKeeper.max_per_attendee = "50M"
c.WorkKeeper.max_total = "2G"         # all attendees together, under data/kept/
c.WorkKeeper.max_per_network = "500M" # all sessions of one client network (a room behind one NAT: more)
# The workshop's record (data/record/), read by `python -m spawner.report` and /status/report.
c.WorkshopRecord.enabled = True

# --- several workshops on one service (docs/workshop/several-workshops.md) ---------------------------
# Each named workshop gets its own links (/w/<name>/), pool, image, sizes and limits; the
# settings above are every workshop's defaults. SIGHUP adds, changes and removes workshops.
# c.NbpoolApp.workshops = {
#     "python-intro": {"display_name": "Python for beginners", "warm": 10, "max_containers": 40,
#                      "landing_path": "notebooks/01-python-introduction.ipynb",
#                      "push_folder": "/srv/workshops/python-intro",
#                      "schedule": [{"start": "2026-12-03 09:00", "end": "2026-12-03 12:30", "warm": 40}]},
#     "r-stats": {"display_name": "Statistics with R", "image": "nbpool/notebook:latest", "warm": 5,
#                 "max_containers": 30, "mem_limit": "2G", "landing_path": "lab", "key": "r-stats-2026-xyz"},
# }
# c.NbpoolApp.total_containers = 60   # all workshops together (each keeps its share)
# c.NbpoolApp.time_zone = "Europe/Berlin"   # schedule times without an offset ('' : this machine's)
