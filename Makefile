# citygrid: `make run` serves the API on http://127.0.0.1:8000; `make test` runs every test.
# Both set up everything first: a virtualenv with the project, PostGIS, the local database.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CITYGRID := $(BIN)/citygrid
STAMP := $(VENV)/.installed
WEBMAP_STAMP := webmap/node_modules/.installed

.PHONY: setup postgis browser db run test lint format bench fixtures clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(WEBMAP_STAMP): webmap/package.json webmap/package-lock.json
	bash scripts/ensure-node.sh
	npm ci --prefix webmap --no-audit --no-fund --loglevel=error
	touch $(WEBMAP_STAMP)

postgis:
	@if [ -z "$$DATABASE_URL" ]; then bash scripts/ensure-postgis.sh; fi

browser:
	bash scripts/ensure-browser.sh

setup: $(STAMP) $(WEBMAP_STAMP) postgis

db: setup
	$(CITYGRID) db start
	$(CITYGRID) db migrate

run: db
	$(CITYGRID) load fixtures/geojson --if-empty
	$(CITYGRID) serve

test: setup browser
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
	rm -rf $(VENV) .citygrid webmap/node_modules test-output
