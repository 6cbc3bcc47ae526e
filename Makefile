# Two commands: `make demo` and `make test`. Each builds .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: demo test test-unit venv-agent venv-full bench bench-deps clean

$(VENV)/.agent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[agent,demo,ingest]'
	touch $@

# torch first: pip then takes the CPU build that lies on disk instead of a CUDA one.
$(VENV)/.full: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[agent,demo,ingest,train,airflow,dev]'
	touch $@ $(VENV)/.agent

venv-agent: $(VENV)/.agent
venv-full: $(VENV)/.full

demo: $(VENV)/.agent
	$(PY) -m agent.demo $(DEMO_ARGS)

# The tests talk to real services: start whichever are down (PostgreSQL, RabbitMQ, Mosquitto, dockerd).
test: $(VENV)/.full
	bash deploy/local/services-up.sh
	$(PY) -m pytest -q -ra tests

test-unit: $(VENV)/.full
	$(PY) -m pytest -q -ra tests/unit

clean:
	rm -rf $(VENV) build *.egg-info

# Reference agents for benchmarks/agent_overhead.py (Debian packages; root).
bench-deps:
	apt-get install -y -q --no-install-recommends collectd-core prometheus-node-exporter

bench: $(VENV)/.full
	$(PY) benchmarks/agent_overhead.py --sessions 100 --json
	$(PY) benchmarks/agent_overhead.py --sessions 1000 --json

# Host release (deploy/host/): the wheel and a tarball with install.sh in dist/; -offline also
# carries every dependency's wheel (this Python and CPU only); deb builds the venv on HOST_PYTHON.
HOST_PYTHON ?= /usr/bin/python3
.PHONY: package package-offline deb

package:
	sh deploy/host/package.sh --out dist --python $(PYTHON)

package-offline:
	sh deploy/host/package.sh --out dist --python $(PYTHON) --offline

deb: package
	sh deploy/host/build-deb.sh --out dist --python $(HOST_PYTHON) --wheel "$$(ls -t dist/pspe-*.whl | head -n 1)"
