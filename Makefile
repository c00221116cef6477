# nbpool: the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is a step those two take; each step is idempotent.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nbpool-installed
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test engine images base notebook venv browser clean-containers

help:
	@echo "make run     start nbpool on http://127.0.0.1:8000 (engine, images and virtualenv first)"
	@echo "make test    build everything a fresh machine lacks, then run the whole test suite"
	@echo "make engine  make a Docker engine reachable (installs and starts dockerd if needed)"
	@echo "make images  build nbpool/base:bookworm and nbpool/notebook:latest (skips what exists)"

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
# through executable_path; its own browser download cannot work offline).
browser:
	@bash tests/resources/install-browser.sh

test: venv engine images
	@$(PY) -m pytest

run: venv engine images
	@echo "run: the service (start.py on port 8000) arrives with the front-door issue;"
	@echo "run: for now 'make run' prepares the engine, images and virtualenv it will use."

# Remove every container nbpool's tests or pools left behind (by label).
clean-containers:
	@ids=$$(docker ps -aq --filter label=org.nbpool.pool); \
	 if [ -n "$$ids" ]; then docker rm -f $$ids >/dev/null && echo "removed $$(echo $$ids | wc -w) containers"; else echo "no nbpool containers"; fi
