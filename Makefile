# Footprint: `make run` (the embedded default) and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed
NODE_SDK := tests/sdks/node

.PHONY: run test lint format install bench bench-segments bench-admin soak clean node-sdk vendor screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_local --port $(PORT)
	$(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

# The JavaScript SDKs' tests (tests/tracking/test_sdks.py, test_browser_sdks.py) need the
# packages pinned in tests/sdks/node/package-lock.json; installed again when the lock changes.
# Without npm they skip (in CI, FOOTPRINT_REQUIRE_SERVICES=1 makes them fail instead).
NODE_STAMP := $(NODE_SDK)/node_modules/.footprint-installed
node-sdk:
	@if command -v npm >/dev/null 2>&1; then \
		if [ ! -f $(NODE_STAMP) ] || [ $(NODE_SDK)/package-lock.json -nt $(NODE_STAMP) ]; then \
			npm ci --prefix $(NODE_SDK) --no-audit --no-fund && touch $(NODE_STAMP) \
				|| echo "npm ci failed: the JavaScript SDK tests will be skipped"; \
		fi; \
	fi

test: $(STAMP) node-sdk
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ingestion throughput (accept, process, callFlows) next to raw COPY; BENCH_ARGS=--quick for seconds.
bench: $(STAMP)
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

# Mixed valid and invalid traffic with a worker killed mid-run; checks stored and failed counts
# at the end. Three minutes; SOAK_ARGS=--quick for about 20 s, SOAK_ARGS="--minutes 10" for longer.
# SOAK_ARGS=--topology: two gunicorn instances, 3+1 Celery workers, PgBouncer and RabbitMQ (as CI).
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

# Segment recompute and export over 100k guests / 2M events on local PostgreSQL.
bench-segments: $(STAMP)
	$(BIN)/python bench/segments.py $(BENCH_ARGS)

# The admin's pages timed on 10M events loaded with COPY into footprint_admin_bench (once, ~30 min);
# BENCH_ARGS=--quick for 200k events.
bench-admin: $(STAMP)
	$(BIN)/python bench/admin_pages.py $(BENCH_ARGS)

# Full-page PNGs at 1440 px of the admin as a marketer sees it, seeded by seed_demo, in screenshots/.
screenshots: $(STAMP)
	$(BIN)/python bench/screenshots.py $(SCREENSHOTS_ARGS)

# Refresh the vendored front-end libraries (vendor/package.json pins them; the copies are committed).
vendor:
	npm ci --prefix vendor --no-audit --no-fund
	$(PYTHON) vendor/refresh.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(NODE_SDK)/node_modules
