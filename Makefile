# Strata developer commands. `make demo` runs the main job; `make test` runs every test tier.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed

.PHONY: install system-deps protos lint test test-unit test-integration test-e2e test-browser up demo bench clean k8s-validate k8s-rules prometheus-check

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev,ml]'
	$(PIP) install --quiet --no-deps 'label-studio-sdk==2.1.2'
	touch $(STAMP)

install: $(STAMP)

# Prometheus and Chromium, which the e2e and browser tiers drive (apt-get when missing).
system-deps:
	@scripts/system-deps

protos: $(STAMP)
	$(PY) -m strata.common.protogen

lint: $(STAMP)
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/ruff format --check services tests bench
	$(VENV)/bin/mypy

# Two xdist workers: most tests wait on the broker, Postgres or gRPC, so two at a time fit on
# 2 cores; tests marked ONE_RAY_AT_A_TIME (tests/marks.py) stay on one worker, in turn. One
# torch thread per process, or the two workers' training tests fight over the cores.
test: $(STAMP) system-deps
	OMP_NUM_THREADS=1 $(PY) -m pytest tests -n 2 --dist loadgroup

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

test-e2e: $(STAMP) system-deps
	$(PY) -m pytest tests/e2e

test-browser: $(STAMP) system-deps
	$(PY) -m pytest tests/browser

# Render every kustomize overlay and validate it offline (Kubernetes and CRD schemas, the
# deployment rules), then check the Prometheus config and rules with promtool.
k8s-validate: $(STAMP) prometheus-check
	$(PY) -m strata.ops.manifests

k8s-rules: $(STAMP)
	$(PY) -m strata.ops.manifests --write-rules

prometheus-check: system-deps
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/rules/*.yml

up: $(STAMP)
	$(VENV)/bin/strata up

# SERVE=1 keeps the stack up afterwards, with a manager's sign-in link to the console.
demo: $(STAMP)
	$(VENV)/bin/strata demo $(if $(SERVE),--serve)

bench: $(STAMP)
	$(PY) bench/bus_throughput.py
	$(PY) bench/gateway_submit.py
	$(PY) bench/gateway_submit.py --rate 1100
	$(PY) bench/dawid_skene.py
	$(PY) bench/quality_consume.py
	$(PY) bench/sampler.py
	$(PY) bench/inference.py
	$(PY) bench/training.py

clean:
	rm -rf .strata demo-output .pytest_cache .mypy_cache .ruff_cache
