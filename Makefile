# Two commands for a fresh machine:  `make run` (the app)  and  `make test` (every test).
# Overrides: make run PORT=8080 ADDRESS=0.0.0.0 PYTHON=python3.11   (DATA_DIR=... for training)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 8501
ADDRESS ?= localhost

.PHONY: run test setup chromium lint bench

$(BIN)/.installed: requirements.txt requirements-dev.txt
	@echo "First run: installing the pinned requirements into $(VENV) (a minute or two)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed

# Server settings live in .streamlit/config.toml, so `streamlit run app.py` behaves the same.
run: setup
	$(BIN)/python -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT)

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: setup
	$(BIN)/ruff check .

# Ray is optional for the app; the tests of the Ray engine need it (about a minute: tests/test_ray.py).
$(BIN)/.ray-installed: requirements-ray.txt $(BIN)/.installed
	$(BIN)/pip install --disable-pip-version-check -r requirements-ray.txt
	touch $@

test: setup chromium lint $(BIN)/.ray-installed
	$(BIN)/python -m pytest

bench: setup chromium
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.load --with-job
