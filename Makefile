# The two commands a new user needs: `make run` and `make test`. `make help` lists all.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
# pytest-xdist: processes that run the tests at once; auto is one per core, 0 runs them in one.
# worksteal: an idle process takes tests queued for a busy one (a few take tens of seconds).
TEST_PROCESSES ?= auto

.DEFAULT_GOAL := help

# Settings (see .env.example) come from .env when it exists, as KEY=value lines.
-include .env
export $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' .env 2>/dev/null)

.PHONY: help run test test-template fuzz lint format notebooks examples smoke score export bench clean replay bench-stats bench-export screenshots

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
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist worksteal --durations=10 -m "not template"

# The template's promise, checked: another model and api.toml in a student's copy, make test
# there; twice: a copy without .git (a ZIP download), a one-commit one ("Use this template").
test-template: $(BIN)/.dev-installed ## Swap another model into two copies (no .git, one commit), make test there
	$(BIN)/python -m pytest -m template -s tests/test_template_swap.py

# make test draws a few contracts per model, the same every run; this draws new ones, many.
fuzz: $(BIN)/.dev-installed ## Draw 500 api.toml per model (FUZZ_EXAMPLES=...), serve each, check it end to end
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),500) $(BIN)/python -m pytest -n $(TEST_PROCESSES) -q \
		--hypothesis-show-statistics tests/test_contract_fuzz.py

lint: $(BIN)/.dev-installed ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.dev-installed ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

notebooks: $(BIN)/.dev-installed ## Run the notebooks: retrain, rewrite the artifacts and the profile
	$(BIN)/python notebooks/execute_notebooks.py

examples: $(BIN)/.dev-installed ## Retrain the example models of examples/ (wine, diabetes, ...)
	$(BIN)/python examples/train_examples.py
	$(BIN)/python examples/train_stop_and_search.py

smoke: ## Check a deployed app: make smoke URL=https://my-app.up.railway.app
	$(PYTHON) clients/smoke_check.py $(URL)

score: $(BIN)/.dev-installed ## Score a CSV file: make score URL=http://... IN=in.csv OUT=out.csv
	$(BIN)/python clients/score_csv.py "$(URL)" "$(IN)" "$(OUT)"

export: $(BIN)/.dev-installed ## Download the stored rows, resumably: make export URL=http://... OUT=traffic.csv
	$(BIN)/python clients/export.py "$(URL)" "$(OUT)"

bench: $(BIN)/.dev-installed ## Service vs one-row app: Titanic (and with a challenger), a regressor, a brief (POSTGRES_URL=... too)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "Install wrk, the load generator: sudo apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/throughput.py $(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))
	$(BIN)/python benchmarks/throughput.py --model examples/diabetes \
		$(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))
	$(BIN)/python benchmarks/throughput.py --model examples/stop_and_search \
		$(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))

replay: $(BIN)/.dev-installed ## Send notebook 1's held-out passengers and outcomes to a server (URL=...)
	$(BIN)/python clients/replay_traffic.py $(or $(URL),http://localhost:$(PORT))

bench-stats: $(BIN)/.dev-installed ## Time GET /stats over 1 and 10 million stored rows (ROWS=100000, POSTGRES_URL=...)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "Install wrk, the load generator: sudo apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/stats.py $(if $(ROWS),--rows $(ROWS)) \
		$(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))

bench-export: $(BIN)/.dev-installed ## Export 1,000,000 stored rows: time, memory, /predict meanwhile (ROWS=, POSTGRES_URL=)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		{ echo "Install wrk, the load generator: sudo apt-get install wrk"; exit 1; }
	$(BIN)/python benchmarks/export.py --rows $(or $(ROWS),1000000) \
		$(if $(POSTGRES_URL),--postgres-url $(POSTGRES_URL))

screenshots: $(BIN)/.dev-installed ## Redraw docs/*.png, the README's pictures of / and /monitor
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium chromium-driver) || \
		{ echo "Install Chromium: sudo apt-get install chromium chromium-driver"; exit 1; }
	mkdir -p docs
	SCREENSHOTS_DIR=$(CURDIR)/docs $(BIN)/python -m pytest tests/test_pages.py -q

clean: ## Remove the virtual environment, caches and the local database
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis predictions.db predictions.db-*
