# The front door: every task of the project is a target here.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
# `sam build` looks for python3.12 on PATH: the venv's interpreter is one.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1
REGION := $(AWS_DEFAULT_REGION)

SOURCES := functions layers/shared local tests scripts bench

.PHONY: help venv demo dev test lint format typecheck unit validate build check-arch bench deploy clean openapi

help:
	@echo "make demo      - create the venv, start the local stack and run the main job end to end"
	@echo "make test      - lint, type check, tests, template validation, build and arm64 check"
	@echo "make dev       - run the local stack and the provider sandboxes until Ctrl-C"
	@echo "make bench     - benchmarks under bench/ (figures in bench/results/)"
	@echo "make deploy    - sam build && sam deploy (CONFIG_ENV=prod for the prod environment)"

$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt
	@py="$$(scripts/find-python312)"; \
	  if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then \
	    rm -rf "$(VENV)"; echo "creating $(VENV) with $$py"; "$$py" -m venv "$(VENV)"; fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m local.demo

dev: venv
	$(PY) -m local.dev

test: lint typecheck unit validate build check-arch

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

format: venv
	$(VENV)/bin/ruff check --fix $(SOURCES)
	$(VENV)/bin/ruff format $(SOURCES)

typecheck: venv
	$(VENV)/bin/mypy functions layers/shared/payedge_connect local scripts bench

unit: venv
	$(PY) -m pytest

validate: venv
	$(VENV)/bin/sam validate --lint --region $(REGION)

build: venv
	$(VENV)/bin/sam build --parallel --cached

check-arch: build
	$(PY) scripts/check_layer_arch.py .aws-sam/build/SharedLayer

openapi: venv
	PYTHONPATH=layers/shared:. $(PY) scripts/openapi.py

bench: venv
	$(PY) -m bench $(SCENARIO)

CONFIG_ENV ?= default
deploy: build
	$(VENV)/bin/sam deploy --config-env $(CONFIG_ENV)

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
