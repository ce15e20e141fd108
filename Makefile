# signoff — make run: start a demo server; make test: lint + the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
DEMO ?= .demo

.PHONY: setup run test lint fmt bench chaos services teams-package clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install -q --compile-bytecode --python $(PY) -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

run: setup
	@scripts/run-demo.sh $(DEMO)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint Dockerfile

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

services:
	@scripts/ensure-services.sh

# The suite's PostgreSQL is a throwaway cluster (tests/pg_cluster.py), unless SIGNOFF_TEST_PG_URL names one.
test: lint services
	$(PY) -m tests.pg_cluster $(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	@$(PY) -m tests.pg_cluster bash -c 'for b in bench/*.py; do case $$b in */serving.py|*/stats.py|*/requests.py) continue;; esac; echo "== $$b"; PYTHONPATH=. $(PY) $$b || exit 1; done'

# Crash injection in full (tests/chaos): 200 SIGKILLs under load on SQLite and on PostgreSQL,
# then the fault tests with each fault (Slack/PagerDuty 429/5xx/time-outs, full disk) lasting a minute.
chaos: setup
	$(PY) -m tests.pg_cluster $(PY) -m tests.chaos $(CHAOS_ARGS)
	SIGNOFF_CHAOS_FAULT_SECONDS=60 $(PY) -m tests.pg_cluster $(PY) -m pytest -q -p no:cacheprovider tests/chaos/test_faults.py

teams-package:
	@test -n "$(TEAMS_APP_ID)" -a -n "$(SIGNOFF_PUBLIC_URL)" || { echo "usage: make teams-package TEAMS_APP_ID=<Entra app (client) id> SIGNOFF_PUBLIC_URL=https://<host>"; exit 1; }
	@rm -rf build/teams && mkdir -p build/teams
	sed -e 's|{{TEAMS_APP_ID}}|$(TEAMS_APP_ID)|g' -e 's|{{SIGNOFF_PUBLIC_URL}}|$(SIGNOFF_PUBLIC_URL)|g' manifests/teams/manifest.json > build/teams/manifest.json
	cp manifests/teams/color.png manifests/teams/outline.png build/teams/
	cd build/teams && python3 -m zipfile -c $(CURDIR)/manifests/teams/signoff-teams.zip manifest.json color.png outline.png
	@echo "wrote manifests/teams/signoff-teams.zip; upload it in Teams: Apps > Manage your apps > Upload an app"

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
