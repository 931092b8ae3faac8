# farmctl: every target creates or reuses .venv and installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)
BENCH_STAMP := $(VENV)/.bench-$(shell cat pyproject.toml | md5sum | cut -c1-12)
DEMO_CONFIG ?= config/farm.example.toml
DEMO_ARGS ?=

.PHONY: demo test lint bench eval venv mosquitto clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.bench-*
	touch $(BENCH_STAMP)

venv: $(STAMP)

# Tests start their own mosquitto on a free port: install the Debian package when missing and we can.
mosquitto:
	@if ! command -v mosquitto >/dev/null 2>&1 && ! test -x /usr/sbin/mosquitto; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing mosquitto (Debian package) for the MQTT tests"; \
	    (apt-get install -y -qq mosquitto >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null)) || echo "mosquitto install failed: MQTT tests will skip"; \
	  else echo "mosquitto missing and cannot install it (not root or no apt-get): MQTT tests will skip"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/farmctl demo --config $(DEMO_CONFIG) $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) mosquitto lint
	$(BIN)/python -m pytest -m "not slow" -q

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

eval: $(BENCH_STAMP)
	$(BIN)/python -m pytest -m slow -q
	$(BIN)/farmctl forecast evaluate --market NP
	$(BIN)/farmctl forecast evaluate --market BE
	$(BIN)/farmctl forecast evaluate --market FR
	$(BIN)/farmctl forecast evaluate --market DE

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
