# meshplane — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.synced
PYTEST_ARGS ?=

.PHONY: run test check lint typecheck proto bench clean env kube-build kube-binaries kube-up kube-down

# The environment: a venv with uv inside it, then every workspace package from uv.lock.
$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"

$(STAMP): $(UV) uv.lock pyproject.toml */pyproject.toml services/*/pyproject.toml shared/src/meshplane/shared/version.py
	VIRTUAL_ENV=$(abspath $(VENV)) UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(UV) sync --frozen --all-packages --inexact
	# xds-protos ships an older copy of opentelemetry/proto/* that overwrites opentelemetry-proto's
	# files (OTLP exporters then fail to import); reinstall opentelemetry-proto so its files win.
	VIRTUAL_ENV=$(abspath $(VENV)) UV_PROJECT_ENVIRONMENT=$(abspath $(VENV)) $(UV) sync --frozen --all-packages --inexact --reinstall-package opentelemetry-proto
	@touch $(STAMP)

env: $(STAMP)

## run: start the local mesh (bus, control plane, example app) on this machine
run: $(STAMP)
	$(BIN)/meshctl up --config-dir examples/bookinfo

## test: every test, unit and integration, exactly as CI runs them
test: $(STAMP) kube-binaries
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## kube-build: build etcd, kube-apiserver and kube-controller-manager (tests/kube), once per machine
kube-build:
	tests/kube/build.sh

# As kube-build, but a machine without Go goes on (the tests that need the binaries skip and say why).
kube-binaries:
	@tests/kube/build.sh || { rc=$$?; [ $$rc -eq 3 ] || exit $$rc; }

## kube-up: start etcd, kube-apiserver and kube-controller-manager on loopback (.state/kube/kubeconfig)
kube-up: $(STAMP) kube-build
	$(BIN)/python -m meshplane.shared.testing.kubeenv up --state-dir .state/kube

## kube-down: stop what kube-up started (by the PIDs it recorded)
kube-down: $(STAMP)
	$(BIN)/python -m meshplane.shared.testing.kubeenv down --state-dir .state/kube

## check: ruff (lint + format), mypy strict, the import contracts (pyproject.toml [tool.importlinter])
## and the dependency audit (pip-audit over uv.lock, devtools/audit.py)
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared/src ctl/src services/pilot/src services/citadel/src services/galley/src services/cni/src
	PYTHONPATH=. $(BIN)/lint-imports --no-cache
	$(BIN)/python devtools/audit.py

## proto: regenerate the committed Python code for proto/
proto: $(STAMP)
	PYTHON=$(BIN)/python PATH=$(abspath $(BIN)):$$PATH proto/gen.sh

## bench: run the benchmarks and print their figures (see BENCHMARKS.md)
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
