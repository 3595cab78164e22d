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

.PHONY: help venv browser demo dev test lint format typecheck unit validate build check-arch check-layer bench deploy clean openapi screenshots

help:
	@echo "make demo      - create the venv, start the local stack and run the main job end to end"
	@echo "make test      - lint, type check, tests, template validation, build and arm64 check"
	@echo "make dev       - run the local stack, the provider sandboxes and the web app (:8080) until Ctrl-C"
	@echo "make screenshots - run the browser tests and copy their screenshots of the web app to docs/screenshots"
	@echo "make bench     - benchmarks under bench/ (figures in bench/results/)"
	@echo "make deploy    - sam build && sam deploy (CONFIG_ENV=prod for the prod environment)"

$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt layers/shared/requirements-xray.txt
	@py="$$(scripts/find-python312)"; \
	  if [ ! -x "$(PY)" ] || ! "$(PY)" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then \
	    rm -rf "$(VENV)"; echo "creating $(VENV) with $$py"; "$$py" -m venv "$(VENV)"; fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.installed

# The browser tests drive Debian's chromium (Playwright only speaks to it: no browser download). Fonts for
# the vendors' names in every script the sandboxes generate (CJK, emoji).
BROWSER_PACKAGES := chromium fonts-liberation fonts-droid-fallback fonts-noto-color-emoji
browser:
	@missing="$$(for package in $(BROWSER_PACKAGES); do dpkg -s $$package >/dev/null 2>&1 || echo $$package; done)"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "missing: apt-get install $$missing (as root)"; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

demo: venv
	$(PY) -m local.demo

dev: venv
	$(PY) -m local.dev

test: lint typecheck unit validate build check-arch check-layer

lint: venv
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)

format: venv
	$(VENV)/bin/ruff check --fix $(SOURCES)
	$(VENV)/bin/ruff format $(SOURCES)

typecheck: venv
	$(VENV)/bin/mypy functions layers/shared/payedge_connect local scripts bench

# Every core, a whole test file per worker (module-scoped stacks and fleets are built once); every
# test binds free loopback ports and writes only its own tmp_path (the browser tests: .screenshots).
unit: venv browser
	$(PY) -m pytest -n auto --dist loadfile

SCREENSHOTS := docs/screenshots
screenshots: venv browser
	PAYEDGE_SCREENSHOTS=$(CURDIR)/.screenshots $(PY) -m pytest tests/webapp -q
	mkdir -p $(SCREENSHOTS)
	cp .screenshots/[0-9]*.png $(SCREENSHOTS)/

validate: venv
	$(VENV)/bin/sam validate --lint --region $(REGION)

build: venv
	$(VENV)/bin/sam build --parallel --cached

check-arch: build
	$(PY) scripts/check_layer_arch.py .aws-sam/build/SharedLayer

# The runtime's boto3 and botocore stay out of the layer (and its size is printed).
check-layer: build
	$(PY) scripts/check_layer_lean.py .aws-sam/build/SharedLayer

openapi: venv
	PYTHONPATH=layers/shared:. $(PY) scripts/openapi.py

bench: venv
	$(PY) -m bench $(SCENARIO)

CONFIG_ENV ?= default
deploy: build
	$(VENV)/bin/sam deploy --config-env $(CONFIG_ENV)

clean:
	rm -rf .aws-sam .mypy_cache .ruff_cache .pytest_cache
