# citygrid: `make run` serves the API on http://127.0.0.1:8000; `make test` runs every test.
# Both set up everything first: a virtualenv with the project, PostGIS, the local database.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CITYGRID := $(BIN)/citygrid
STAMP := $(VENV)/.installed

.PHONY: setup postgis db run test lint format bench fixtures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

postgis:
	@if [ -z "$$DATABASE_URL" ]; then bash scripts/ensure-postgis.sh; fi

setup: $(STAMP) postgis

db: setup
	$(CITYGRID) db start
	$(CITYGRID) db migrate

run: db
	$(CITYGRID) load fixtures/geojson --if-empty
	$(CITYGRID) serve

test: setup
	$(CITYGRID) db start
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: db
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "wrk is needed for the load benchmarks: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m benchmarks

fixtures: $(STAMP)
	$(CITYGRID) fixtures generate

clean:
	-$(CITYGRID) db stop
	rm -rf $(VENV) .citygrid
