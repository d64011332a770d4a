# Every target installs what it needs first; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
# Bytecode at install time: the tests start dozens of taskyard processes, and with
# PYTHONDONTWRITEBYTECODE set (as on our machines) each one would compile every import again.
export UV_COMPILE_BYTECODE := 1
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install system-deps serve test smoke docs docs-serve check fmt screenshots bench cluster cluster-down

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: ## Install the locked Python environment into .venv (uv; fetches uv itself if missing)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked

# Every Debian package a test or target starts: PgBouncer and wrk (benchmark, pool tests),
# chromium (the board's browser tests, screenshots),
# Patroni with etcd and HAProxy (failover test, `make cluster`; python3-etcd is Patroni's etcd
# client). Installs only what is missing, so a second run does nothing.
SYSTEM_PACKAGES := pgbouncer wrk chromium patroni python3-etcd etcd-server haproxy

system-deps: ## Install the Debian tools the tests, benchmark and cluster start (apt, if missing)
	@missing="$$(for package in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$package" 2>/dev/null | grep -q 'ok installed' || echo "$$package"; \
	done)"; \
	if [ -n "$$missing" ]; then \
		echo "system-deps: installing" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

serve: install ## Serve the taskyard API on an embedded SQLite file (./taskyard.db)
	$(UV) run taskyard serve --host $(HOST) --port $(PORT)

test: install system-deps ## Run the whole test suite (SQLite and PostgreSQL), lint and types
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy
	$(UV) run pytest

smoke: install ## Build both distributions, check them, run a smoke app on the sessionwise wheel in a fresh venv
	UV="$(UV)" bash smoke/install.sh

docs: install ## Build the docs site (mkdocs --strict) into ./site
	NO_MKDOCS_2_WARNING=1 $(UV) run mkdocs build --strict --quiet

docs-serve: install ## Serve the docs site with live reload, http://127.0.0.1:8001
	NO_MKDOCS_2_WARNING=1 $(UV) run mkdocs serve --dev-addr 127.0.0.1:8001

fmt: install ## Format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

screenshots: install system-deps ## PNGs of the board in chromium into docs/ (shown in the README and docs/board.md)
	$(UV) run python -m tests.support.board_screenshots docs

bench: install system-deps ## Run the benchmark; writes docs/performance.md, JSON and plot
	$(UV) run python -m bench

cluster: install system-deps ## Start taskyard x2 behind HAProxy, PgBouncer, Patroni x2 and etcd on loopback; prints the URLs
	$(UV) run python -m cluster up

cluster-down: ## Stop everything `make cluster` started and remove ./.cluster
	$(UV) run python -m cluster down
