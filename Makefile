# rayqueue: `make test` sets up everything on a fresh machine and runs every check; `make demo` shows it working.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAYQUEUE_CACHE ?= $(HOME)/.cache/rayqueue

.PHONY: test lint unit cluster-test kube venv demo demo-down bench clean image

test: venv kube lint
	$(BIN)/pytest tests

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

# kube-apiserver, kube-scheduler, kube-controller-manager, kubectl v1.20.2 (+ etcd): built once, cached.
kube:
	bash devcluster/build-kube.sh >/dev/null

lint: venv
	$(BIN)/ruff check common kubeio webhook extender certs rayqueue_cli devcluster tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv
	$(BIN)/pytest tests -m 'not cluster'

# The whole product on a detached local cluster in ./.demo, and the guide's story told with kubectl.
# Re-running restarts it cleanly; everything keeps running until `make demo-down`.
demo: venv kube
	$(BIN)/python -m devcluster.demo up

# Stop every process recorded in ./.demo (by PID) and remove it; safe to run twice.
demo-down:
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m devcluster.demo down; \
	else echo "nothing to stop: no $(BIN)/python, so no demo was started"; fi

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Every benchmark (webhook, extender, queues, memory, end to end on a local cluster), about 3 minutes on 2
# cores, bounded and self-stopping: tables on stdout and bench/results/<name>.json. Not part of `make test`.
bench: venv
	$(BIN)/python -m bench

# The container image (Dockerfile): Docker if its daemon answers, else Podman. Not part of `make test`.
# make image IMAGE=registry.example.com/rayqueue:0.1.0 PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= rayqueue:$(VERSION)
PYTHON_IMAGE ?= python:3.11-slim-bookworm
CONTAINER_ENGINE ?=
image:
	@engine="$(CONTAINER_ENGINE)"; \
	if [ -z "$$engine" ]; then \
	  for candidate in docker podman; do \
	    if command -v $$candidate >/dev/null 2>&1 && $$candidate info >/dev/null 2>&1; then engine=$$candidate; break; fi; \
	  done; \
	fi; \
	if [ -z "$$engine" ]; then \
	  echo "make image: no usable container engine: docker: $$(command -v docker >/dev/null 2>&1 && { docker info 2>&1 >/dev/null | head -1; } || echo 'not installed'); podman: $$(command -v podman >/dev/null 2>&1 && { podman info 2>&1 >/dev/null | head -1; } || echo 'not installed')" >&2; \
	  echo "make image: start the Docker daemon or install Podman, or set CONTAINER_ENGINE=..." >&2; \
	  exit 1; \
	fi; \
	echo "$$engine build -t $(IMAGE) --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) ."; \
	$$engine build -t $(IMAGE) --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) .
