# signoff — make run: start a demo server; make test: lint + the whole suite.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-12)
DEMO ?= .demo

.PHONY: setup run test lint fmt bench services teams-package clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv==0.13.8
	$(VENV)/bin/uv pip install -q --python $(PY) -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

setup: $(STAMP)

run: setup
	@scripts/run-demo.sh $(DEMO)

lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

services:
	@scripts/ensure-services.sh

test: lint services
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO) .mypy_cache .ruff_cache .pytest_cache
