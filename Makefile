# Everything installs from the project's own files: a fresh machine needs only python3 (3.11+) and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
# LiteLLM's proxy, the peer `make bench-peers` measures the gateway beside (pinned in bench/litellm-requirements.txt).
LITELLM_VENV := .venv-litellm
LITELLM_REQUIREMENTS := bench/litellm-requirements.txt
export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_VERSION)
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
LITELLM_STAMP := $(LITELLM_VENV)/.installed-$(shell cat $(LITELLM_REQUIREMENTS) | cksum | cut -d' ' -f1)
# Python 3.13's compiler for the Lambda packages' bytecode (Pyodide, from the npm registry: see compile.mjs).
BYTECODE_DIR := tools/bytecode
BYTECODE_STAMP := $(BYTECODE_DIR)/node_modules/.installed-$(shell cat $(BYTECODE_DIR)/package-lock.json | cksum | cut -d' ' -f1)
# The openai npm package and Vercel's AI SDK, which integration tests drive against the local stack (tests/integration/js).
OPENAI_JS_DIR := tests/integration/js
OPENAI_JS_STAMP := $(OPENAI_JS_DIR)/node_modules/.installed-$(shell cat $(OPENAI_JS_DIR)/package-lock.json | cksum | cut -d' ' -f1)
# Debian's chromium, which Playwright drives in the playground's browser tests (browsers cannot be downloaded here).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: dev test install lint unit integration validate build deploy clean openapi bench bench-peers load

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli==$(SAM_VERSION)
	touch $@

$(BYTECODE_STAMP): $(BYTECODE_DIR)/package-lock.json
	cd $(BYTECODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(OPENAI_JS_STAMP): $(OPENAI_JS_DIR)/package-lock.json
	cd $(OPENAI_JS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)
	touch $@

$(LITELLM_STAMP): $(LITELLM_REQUIREMENTS)
	test -x $(LITELLM_VENV)/bin/python || $(PYTHON) -m venv $(LITELLM_VENV)
	@# Without PYTHONPATH: this checkout's packages are not LiteLLM's, and pip would check their requirements too.
	PYTHONPATH= $(LITELLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	PYTHONPATH= $(LITELLM_VENV)/bin/python -m pip install --quiet -r $(LITELLM_REQUIREMENTS)
	rm -f $(LITELLM_VENV)/.installed-* && touch $@

install: $(STAMP)

## make dev: the local stack on http://127.0.0.1:$${PORT:-3000} (moto, fake or real Segmind, API Gateway emulator)
dev: $(STAMP)
	$(BIN)/python -m local.stack

## make test: lint, template checks, sam build, unit and integration tests (with the playground's, in headless Chromium)
test:
	@# The three virtualenvs, the bytecode compiler, the openai npm package and Debian's chromium install side by side: one after the other took five of a fresh clone's minutes.
	@$(MAKE) --no-print-directory -j3 $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP) $(BYTECODE_STAMP) $(OPENAI_JS_STAMP) $(CHROMIUM)
	@$(MAKE) --no-print-directory lint validate build
	$(BIN)/python -m pytest

## make load: 2,000 mixed requests at 50 concurrency against a fresh local stack (loopback only, bounded)
load: $(STAMP)
	$(BIN)/python -m bench.load --requests 2000 --concurrency 50

## make bench: three targets as ratios to floors from the same run, latency, AWS calls per path, credits
## efficiency, cold start, large outputs -> docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench.run

## make bench-peers: the gateway beside LiteLLM's pass-through and direct calls, side by side and on a workload of
## bursts and repeats (about 5 min) -> its section of docs/benchmarks.md, docs/benchmarks-peers.png
bench-peers: $(STAMP) $(LITELLM_STAMP)
	@# matplotlib (the bench extra) is installed as `make bench` installs it, unless it already is.
	$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python -m bench.peers

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# The layers of segmind_proxy (api over flows over domain; adapters over domain): see pyproject.toml.
	$(BIN)/lint-imports

## make unit: every test but those on a local stack (the integration tests and the docs' examples)
unit: $(STAMP)
	$(BIN)/python -m pytest tests --ignore=tests/integration --ignore=tests/docs

integration: $(STAMP) $(OPENAI_JS_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest tests/integration tests/docs

## make openapi: regenerate docs/openapi.json from the code and docs/models.md from the model files (tests fail on drift)
openapi: $(STAMP)
	$(BIN)/python -m local.openapi_export

## make validate: cfn-lint, sam validate --lint, checkov (every skip carries its reason in template.yaml)
validate: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP)
	$(BIN)/cfn-lint template.yaml
	$(SAM) validate --lint --region $${AWS_REGION:-us-east-1}
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation --skip-download --compact --quiet

## make build: sam build without Docker (the Core layer cross-installs cp313 aarch64 wheels, and every package
## ships CPython 3.13 bytecode compiled by tools/bytecode); prints package sizes
build: $(SAM_STAMP) $(BYTECODE_STAMP)
	BYTECODE=$(CURDIR)/$(BYTECODE_DIR)/compile.mjs $(SAM) build
	@du -sh .aws-sam/build/*/ | sed 's|.aws-sam/build/||'

ENV ?= dev
## make deploy [ENV=dev|prod]: sam deploy with samconfig.toml's environment
deploy: build
	$(SAM) deploy --config-env $(ENV) $(ARGS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache
