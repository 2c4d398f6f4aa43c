# Everyday commands. `make help` lists them. STACK selects the stack (default: dev).
SHELL := /bin/bash
STACK ?= dev
VENV := .venv
PY := $(VENV)/bin/python
# Pulumi state in a local folder: no Pulumi Cloud account needed.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
# Local stacks' secrets are not secret: an empty passphrase unless you set one.
export PULUMI_CONFIG_PASSPHRASE ?=

.PHONY: help venv engine base-images wrk up policy smoke destroy local-up local-down test soak lint format bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt service/requirements.txt \
		policy/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## create .venv with the program's, the tests' and the tools' packages

engine: ## make sure a Docker engine answers (installs and starts Debian's docker.io if needed)
	@bash scripts/ensure-docker.sh

base-images: engine ## build the offline base images from Debian's packages if missing
	@bash base-images/build.sh

wrk: ## install Debian's wrk if missing (the benchmark's load generator; as root)
	@command -v wrk >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

up: venv base-images ## pulumi up: build the images and deploy the stack (needs the pulumi CLI)
	pulumi stack select --create $(STACK)
	pulumi up --yes --stack $(STACK)
	$(MAKE) --no-print-directory smoke

policy: venv ## check every container's and service's hardening (policy/) before anything is deployed
	@if command -v pulumi >/dev/null; then \
	  pulumi stack select --create $(STACK) && \
	  pulumi preview --stack $(STACK) --policy-pack policy; \
	else \
	  echo "no pulumi CLI: the pack's policies over the program under the mock runtime"; \
	  PYTHONPATH=. $(PY) policy/mock_preview.py --stack $(STACK); \
	fi

smoke: venv ## smoke-test the deployed stack (URL=... or pulumi's url output)
	$(PY) scripts/smoke_test.py $(URL)

destroy: ## pulumi destroy: remove the stack's containers and network
	pulumi destroy --yes --stack $(STACK)

local-up: venv base-images ## deploy STACK on the local engine without the pulumi CLI (test machinery)
	@$(PY) -m engine_harness up --stack $(STACK)

local-down: venv ## remove what local-up deployed for STACK
	@$(PY) -m engine_harness down --stack $(STACK)

test: venv base-images wrk ## run every test (engine tests need Docker; CI=true makes them mandatory)
	$(VENV)/bin/pytest

soak: venv base-images ## the long repetitions `make test` leaves out (about 10 minutes)
	$(VENV)/bin/pytest -m soak

lint: venv ## ruff, mypy and actionlint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy infra engine_harness scripts policy bench
	$(VENV)/bin/mypy policy/__main__.py
	$(VENV)/bin/actionlint

format: venv ## format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv base-images wrk ## measure the stack against its baselines (writes bench/results/)
	$(PY) -m bench

clean: local-down ## remove local-up's stack, the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
