# Two entry points: `make run` (the default suite end to end into reports/) and `make test`.
# Both create .venv idempotently from requirements.lock (exact pins) and install the project in it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CORES  ?= all
SMK    := $(BIN)/snakemake --workflow-profile workflow/profiles/default
SUITE  ?= quick

.PHONY: run test test-fast report dry-run lint lock clean-results

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock  # a full freeze: no resolution (llmcompressor caps transformers below our pin)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: $(STAMP)
	$(SMK) --cores $(CORES) --config suite=$(SUITE)
	$(SMK) --cores $(CORES) --config suite=$(SUITE) --report reports/report.html
	@grep -m1 " claims: " results/logs/claims.log || true
	@echo "report: $(CURDIR)/reports/report.html (claims: reports/claims.md)"

# Tests in one worker process per core (`-n auto`), each module kept on one worker (its fixtures are
# module-wide: a cluster, a composed plan); the slowest are listed at the end.
PYTEST := $(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=25

test: $(STAMP)
	$(PYTEST)

# Everyday subset: everything but the tests marked slow (real Snakemake and SLURM runs, big oracles).
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

report: $(STAMP)
	$(SMK) --cores $(CORES) --config suite=$(SUITE) --report reports/report.html

dry-run: $(STAMP)
	$(SMK) -n --config suite=$(SUITE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint --config suite=$(SUITE)

# Re-pin: regenerate requirements.lock from the current venv and environment.yml from the lock.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --all --exclude-editable | grep -v -E '^(pip|wheel)==' | sed 's/+cpu$$//' > requirements.lock
	{ printf 'name: tradeoffs\n# Same pins as requirements.lock (tests/test_install.py checks that they agree). Regenerate both with `make lock`.\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n'; \
	  sed 's/^/      - /' requirements.lock; printf '      - -e .\n'; } > environment.yml

clean-results:
	rm -rf results reports/figures reports/tables reports/report.html
