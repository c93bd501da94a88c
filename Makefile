# Two commands for a fresh machine:  `make run` (the app)  and  `make test` (every test).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PORT ?= 8501

.PHONY: run test setup chromium lint bench

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/python -m streamlit run app.py --server.address localhost --server.port $(PORT) --browser.gatherUsageStats false

chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: setup
	$(BIN)/ruff check .

test: setup chromium lint
	$(BIN)/python -m pytest

bench: setup chromium
	$(BIN)/python -m bench.run
