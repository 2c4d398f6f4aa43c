# Everyday commands. `make help` lists them. STACK selects the stack (default: dev).
SHELL := /bin/bash
STACK ?= dev
VENV := .venv
PY := $(VENV)/bin/python
# Pulumi state in a local folder: no Pulumi Cloud account needed.
export PULUMI_BACKEND_URL ?= file://$(CURDIR)/.pulumi-state
# The stacks' secrets (the stack CA's key, a provided TLS key) are encrypted with your passphrase
# (PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE), else with one made on first use in
# PASSPHRASE_FILE (gitignored, mode 0600): keep that file, the state can't be read without it.
PASSPHRASE_FILE := $(CURDIR)/.pulumi-passphrase
ifeq ($(origin PULUMI_CONFIG_PASSPHRASE)$(origin PULUMI_CONFIG_PASSPHRASE_FILE),undefinedundefined)
export PULUMI_CONFIG_PASSPHRASE_FILE := $(PASSPHRASE_FILE)
MAKE_PASSPHRASE := python3 scripts/passphrase.py $(PASSPHRASE_FILE)
endif
# The pulumi CLI: one on PATH, else the one `make pulumi-cli` builds from Go modules.
export PATH := $(PATH):$(CURDIR)/.pulumi-cli/bin
export PULUMI_SKIP_UPDATE_CHECK := true

.PHONY: help passphrase venv engine base-images pulumi-cli wrk up policy smoke destroy local-up local-down test soak lint format generate bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

passphrase: ## make the stacks' passphrase file unless you set a passphrase of your own
	@$(or $(MAKE_PASSPHRASE),true)

$(VENV)/.installed: requirements.txt requirements-dev.txt service/requirements.txt \
		policy/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## create .venv with the program's, the tests' and the tools' packages

engine: ## make sure a Docker engine answers (installs and starts Debian's docker.io if needed)
	@bash scripts/ensure-docker.sh

base-images: engine ## build the local base images from Debian's packages if missing (tests, bench)
	@bash base-images/build.sh

pulumi-cli: venv ## build the pulumi CLI from Go modules, unless one is installed (module-proxy-only hosts)
	@found=$$(command -v pulumi || true); \
	if [ -n "$$found" ] && [ "$$found" != "$(CURDIR)/.pulumi-cli/bin/pulumi" ]; then \
	  echo "using $$found"; \
	else bash pulumi-cli/build.sh; fi

# Whether the pulumi on PATH can run a Python program: its language host beside it or on PATH
# (a CLI built from Go modules has none: docs/pulumi-cli.md).
RUNS_PYTHON = command -v pulumi-language-python >/dev/null || \
	[ -x "$$(dirname "$$(command -v pulumi)")/pulumi-language-python" ]

wrk: ## install Debian's wrk if missing (the benchmark's load generator; as root)
	@command -v wrk >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }

# The stack's base images: the official ones where the engine pulls them, else the local ones
# (built from Debian's packages and set in the stack's file): base-images/choose.py.
CHOOSE_BASES = PYTHONPATH=infra $(PY) base-images/choose.py --stack $(STACK)

up: venv engine pulumi-cli passphrase ## pulumi up: build the images and deploy the stack (needs the pulumi CLI)
	@$(RUNS_PYTHON) || { echo "error: this pulumi has no Python language host, so it runs no" \
	  "Python program (docs/pulumi-cli.md); 'make local-up' deploys the stack without it" >&2; exit 1; }
	@$(CHOOSE_BASES)
	pulumi stack select --create $(STACK)
	pulumi up --yes --stack $(STACK)
	$(MAKE) --no-print-directory smoke

policy: venv passphrase ## check every container's and service's hardening (policy/) before anything is deployed
	@if $(RUNS_PYTHON); then \
	  pulumi stack select --create $(STACK) && \
	  pulumi preview --stack $(STACK) --policy-pack policy; \
	else \
	  echo "no pulumi CLI with its Python host: the pack's policies over the program under the mock runtime"; \
	  PYTHONPATH=. $(PY) policy/mock_preview.py --stack $(STACK); \
	fi

smoke: venv passphrase ## smoke-test the deployed stack (URL=... or pulumi's url output)
	$(PY) scripts/smoke_test.py $(URL)

destroy: pulumi-cli passphrase ## pulumi destroy: remove the stack's containers and network
	pulumi destroy --yes --stack $(STACK)

local-up: venv engine passphrase ## deploy STACK on the local engine without the pulumi CLI (test machinery)
	@$(CHOOSE_BASES)
	@$(PY) -m engine_harness up --stack $(STACK)

local-down: venv passphrase ## remove what local-up deployed for STACK
	@$(PY) -m engine_harness down --stack $(STACK)

test: venv base-images wrk pulumi-cli passphrase ## run every test (engine tests need Docker; CI=true makes them mandatory)
	$(VENV)/bin/pytest

soak: venv base-images ## the long repetitions `make test` leaves out (about 10 minutes)
	$(VENV)/bin/pytest -m soak

lint: venv ## ruff, mypy and actionlint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy infra engine_harness scripts policy bench base-images/choose.py
	$(VENV)/bin/mypy policy/__main__.py
	$(VENV)/bin/actionlint

generate: venv ## write the files that list the config keys from infra/config_keys.py's table
	PYTHONPATH=infra $(PY) scripts/generate_config.py

format: venv ## format and fix what ruff can
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv base-images wrk passphrase ## measure the stack against its baselines (writes bench/results/)
	$(PY) -m bench

clean: local-down ## remove local-up's stack, the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
