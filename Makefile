# The two commands a new user needs: `make run` and `make test`. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000

.DEFAULT_GOAL := help

# Settings (see .env.example) come from .env when it exists, as KEY=value lines.
-include .env
export $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' .env 2>/dev/null)

.PHONY: help run test lint format notebooks smoke score bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The virtual environment, reinstalled only when a requirements file changes.
$(BIN)/.prod-installed: requirements_prod.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements_prod.txt
	touch $@

$(BIN)/.dev-installed: $(BIN)/.prod-installed requirements_dev.txt
	$(BIN)/python -m pip install --quiet -r requirements_dev.txt
	touch $@

run: $(BIN)/.prod-installed ## Install and serve on SQLite at http://localhost:5000
	PORT=$(PORT) $(BIN)/gunicorn --config gunicorn.conf.py app:app

test: $(BIN)/.dev-installed ## Install the dev tools, lint, run every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

lint: $(BIN)/.dev-installed ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.dev-installed ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

notebooks: $(BIN)/.dev-installed ## Run both notebooks: retrain and rewrite the artifacts
	$(BIN)/python notebooks/execute_notebooks.py

smoke: ## Check a deployed app: make smoke URL=https://my-app.up.railway.app
	$(PYTHON) smoke_check.py $(URL)

score: $(BIN)/.dev-installed ## Score a CSV file: make score URL=http://... IN=in.csv OUT=out.csv
	$(BIN)/python batch_score.py "$(URL)" "$(IN)" "$(OUT)"

bench: $(BIN)/.dev-installed ## Service vs one-row app, side by side (POSTGRES_URL=... adds PostgreSQL)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "Install wrk, the load generator: sudo apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/throughput.py $(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))

clean: ## Remove the virtual environment, caches and the local database
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis predictions.db predictions.db-*
