# Phoenix Coupons. `make run` and `make test` are all a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PHOENIX_DATA_DIR ?= .phoenix
PYTEST_ARGS ?=

.PHONY: install run test lint format bench schemas docs clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# The test extra brings the embedded Kafka and MongoDB used when no URLs are set.
install: $(PY)
	$(PY) -m pip install --quiet -e '.[test]'

# The whole service in the foreground; embedded servers unless KAFKA_BOOTSTRAP_SERVERS and
# MONGODB_URI are set. Ctrl-C stops all of it; data stays in $(PHOENIX_DATA_DIR).
run: install
	PHOENIX_DATA_DIR=$(PHOENIX_DATA_DIR) $(PY) -m phoenix_coupons.devservers \
		--data-dir $(PHOENIX_DATA_DIR) -- $(PY) -m phoenix_coupons run

# The full suite, closing with a count per tier (unit, integration, e2e; `-m unit` runs one
# tier). PHOENIX_TEST_SERVERS (tests/servers.py) picks the servers: embedded (the
# default: in a throwaway folder), containers (apache/kafka and mongo through Docker; fails
# when no Docker engine answers) or external (KAFKA_BOOTSTRAP_SERVERS and MONGODB_URI, which
# alone also mean external). `make test PHOENIX_TEST_SERVERS=containers`.
test: install
	$(PY) -m tests.servers -- $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Regenerate the committed JSON Schema and AsyncAPI files from the models in schemas/.
schemas: install
	$(PY) -m schemas.export

# Regenerate docs/configuration.md (from the settings' descriptions) and the walks' pages
# (docs/walkthrough.md, lifecycle.md, campaign.md, from their scripts); tests/unit/test_docs.py fails when the committed pages differ.
docs: install
	$(PY) -m phoenix_coupons.docgen

# All scenarios (BENCHMARKS.md); `make bench BENCH=scale` (or BENCH="a d") runs only those,
# BENCH_ARGS passes options (`make bench BENCH=scale BENCH_ARGS="--scale-reps 5"`).
BENCH ?=
BENCH_ARGS ?=
bench: install
	$(PY) -m phoenix_coupons.devservers --temp -- $(PY) -m bench \
		$(foreach s,$(BENCH),--only $(s)) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
