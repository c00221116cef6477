# nbpool: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step those two take; each step is idempotent.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nbpool-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test engine images base notebook venv browser docs clean-containers cluster cluster-down rehearse check

help:
	@echo "make run     start nbpool on port 8000 with config/nbpool_config.py (engine, images, virtualenv first)"
	@echo "             extra options: make run ARGS='--warm 10 --max-containers 60'"
	@echo "make test    build everything a fresh machine lacks, then run the whole test suite"
	@echo "make check   the fast tier while developing: every test that needs no engine (about a minute)"
	@echo "make engine  make a Docker engine reachable (installs and starts dockerd if needed)"
	@echo "make images  build nbpool/base:bookworm and nbpool/notebook:latest (skips what exists)"
	@echo "make rehearse  run the workshop's notebooks as simulated attendees against a running nbpool and say"
	@echo "             whether it holds: URL=http://127.0.0.1:8000 MATERIAL=notebook-image/workshops ATTENDEES=10"
	@echo "             FOR=<the workshop's size> (the admin token is read from data/admin_token of make run)"
	@echo "make cluster a local Docker Swarm of node containers: a manager + WORKERS (default 2);"
	@echo "             prints DOCKER_HOST for its manager. make cluster-down removes it all"

# The virtualenv is rebuilt only when the project's metadata changes.
venv: $(STAMP)
$(STAMP): setup.cfg pyproject.toml
	@test -x $(PY) || { echo "venv: creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "venv: installing nbpool and its test dependencies into $(VENV)"
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

engine:
	@bash arch-base/engine.sh

base: engine
	@bash arch-base/mkimage.sh --distro debian

images: base
	@bash notebook-image/build.sh

# Chromium from Debian for the end-to-end browser tests (Playwright drives it
# through executable_path; its own browser download cannot work offline), and
# Thebe (pinned, from the npm registry) for the test of pages with live code.
browser:
	@bash tests/resources/install-browser.sh
	@bash tests/resources/install-thebe.sh

# Two pytest-xdist workers, each taking whole files (the Swarm file, the longest, beside the rest); then the
# faults file alone, as it restarts the engine under every other test's feet.
test: venv engine images browser
	@# The engine script's own tests make btrfs data roots (NBPOOL_ENGINE_QUOTA=1): its tools, where root can add them.
	@[ "$$(id -u)" != 0 ] || bash arch-base/engine-btrfs.sh tools
	@$(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder --ignore=tests/chaos $(ARGS)
	@$(PY) -m pytest tests/chaos $(ARGS)

# The fast tier while developing (about a minute, no engine or browser needed): every test that does not
# use the engine (proxy, pool logic on a fake clock, units). make test runs these and the rest.
check: venv
	@$(PY) -m pytest -m "not docker" $(ARGS)

run: venv engine images
	@$(PY) start.py $(ARGS)

# A dress rehearsal against a running service (make run): the workshop's notebooks, cell by cell, as
# ATTENDEES simulated attendees; the verdict and the settings it would take, in words, JSON and HTML.
URL       ?= http://127.0.0.1:8000
MATERIAL  ?= notebook-image/workshops
ATTENDEES ?= 10
rehearse: venv
	@$(PY) -m loadtest $(URL) --rehearse $(MATERIAL) --attendees $(ATTENDEES) $(if $(FOR),--for $(FOR)) \
	  --admin-token-file $(or $(TOKEN_FILE),data/admin_token) --json rehearsal.json --html rehearsal.html $(ARGS)

# The documentation site, offline, into docs/_build/html: the generated references first (settings from their
# help, metrics from what /metrics renders), the browser tests' latest pictures, then Sphinx with warnings as errors.
docs: venv
	@$(PY) start.py --config-reference docs/reference/configuration.md
	@$(PY) docs/tools/metrics_reference.py docs/reference/metrics.md
	@$(PY) docs/tools/refresh_screenshots.py
	@$(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

# A local Swarm (manager + WORKERS node containers) for the swarm spawner; the
# host engine stays out of it (it keeps live restore).
cluster: engine images
	@bash arch-base/cluster.sh up $(or $(WORKERS),2)

cluster-down:
	@bash arch-base/cluster.sh down

# Remove every container nbpool's tests or pools left behind (by label).
clean-containers:
	@ids=$$(docker ps -aq --filter label=org.nbpool.pool); \
	 if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null && echo "removed $$(echo $$ids | wc -w) containers"; else echo "no nbpool containers"; fi
