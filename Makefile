# Every target installs what it needs first; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3.11
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help install system-deps serve test smoke docs docs-serve check fmt screenshots bench

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: ## Install the locked Python environment into .venv (uv; fetches uv itself if missing)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked

system-deps: ## Install the Debian tools the tests and benchmark start (pgbouncer, wrk, chromium)
	@missing=""; \
	{ command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || missing="$$missing pgbouncer"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	{ command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
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
