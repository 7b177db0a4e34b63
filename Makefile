# The README's two commands: `make demo` and `make test`. Each creates .venv when
# missing and installs what it needs; nothing but Python 3.11+ and make is assumed.
# `make test` and `make bench` also need Debian packages (scripts/system-packages.list):
# they install them first when they can (root or passwordless sudo), else stop at once
# with the apt-get line to run.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUN_DEPS := $(VENV)/.run-deps
TEST_DEPS := $(VENV)/.test-deps
BENCH_DEPS := $(VENV)/.bench-deps
# The suite runs on up to four workers (each with its own S3 server); PYTEST_ARGS adds to it.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ "$$n" -gt 4 ] && n=4; echo $$n)
PYTEST_ARGS ?=

.PHONY: demo test docs bench torture clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "drplan needs Python 3.11 or newer: run make PYTHON=python3.11 (or newer)"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "'$(PYTHON) -m venv' failed: on Debian or Ubuntu, apt-get install python3-venv"; exit 1; }
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip

# scripts/: installed as copies (drplan-wal-push), so a change must reinstall them.
$(RUN_DEPS): pyproject.toml scripts/drplan-wal-push | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[postgres]'
	@touch $@

$(TEST_DEPS): pyproject.toml scripts/drplan-wal-push | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $@ $(RUN_DEPS)

$(BENCH_DEPS): pyproject.toml scripts/drplan-wal-push | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[bench]'
	@touch $@ $(RUN_DEPS)

# The main job on embedded defaults: the SmartWatts plan checked and shown, then run by
# `drplan serve` against an embedded PostgreSQL with live meter readings, until Ctrl-C.
demo: $(RUN_DEPS)
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash examples/smartwatts/demo.sh

# The Debian packages first (nothing runs without them), then style and types, so they
# cannot drift, then the whole suite; pytest's summary is the last line.
test:
	@PYTHON=$(PYTHON) scripts/system-packages test
	@$(MAKE) --no-print-directory $(TEST_DEPS)
	$(BIN)/ruff check src tests testbed torture bench examples
	$(BIN)/ruff format --check src tests testbed torture bench examples
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Regenerate documents derived from the code.
docs: $(RUN_DEPS)
	$(BIN)/python -m drplan.plan.reference > docs/plan-reference.md
	$(BIN)/python -m drplan.plan.lint.catalog > docs/lint-rules.md

# Benchmarks (never part of `make test`); results go to docs/benchmarks.md. Their peers are
# Debian packages (restic for files and copies, pgBackRest and PostgreSQL 15 for PostgreSQL,
# skopeo for images, git itself for git),
# installed first as for `make test`.
bench:
	@PYTHON=$(PYTHON) scripts/system-packages bench
	@$(MAKE) --no-print-directory $(BENCH_DEPS)
	$(BIN)/python bench/plan_bench.py
	$(BIN)/python bench/files_bench.py --runs 3
	$(BIN)/python bench/copy_bench.py --runs 3
	$(BIN)/python bench/key_bench.py --runs 3
	$(BIN)/python bench/pg_bench.py --scale 100 --runs 3
	$(BIN)/python bench/wal_bench.py --segments 100 --runs 3
	$(BIN)/python bench/drill_bench.py --scale 50 --runs 3
	$(BIN)/python bench/incident_bench.py --scale 20 --runs 3
	$(BIN)/python bench/web_bench.py --systems 50 --runs 20
	$(BIN)/python bench/platform_bench.py --runs 3

# The torture suite at scale (never part of `make test`, which runs a sample): over 1,000
# kill -9 trials, over 500 bit flips, the decoders fuzzed; the table goes into
# docs/reliability.md. TORTURE_ARGS: e.g. --seed N, --only KIND, --scale sample.
TORTURE_ARGS ?=
torture:
	@PYTHON=$(PYTHON) scripts/system-packages test
	@$(MAKE) --no-print-directory $(TEST_DEPS)
	$(BIN)/python -m torture --write docs/reliability.md $(TORTURE_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache src/*.egg-info
