# Mamori — the two entry points are `make demo` and `make test`; both bootstrap .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck venv clean bench bench-smoke

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev,onlooker]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/mamori demo

lint: $(STAMP)
	$(BIN)/ruff check core agent policy server deploy tests benchmarks
	$(BIN)/ruff format --check core agent policy server deploy tests benchmarks
	$(BIN)/lint-imports --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --platform win32 agent/platform agent/posture
	$(BIN)/mypy --platform darwin agent/platform agent/posture

test: $(STAMP)
	$(MAKE) --no-print-directory lint typecheck
	$(BIN)/python -m pytest -q -ra --durations=30

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# The smoke run `make test` keeps (tests/benchmarks/test_bench_smoke.py): every script at tiny sizes.
bench-smoke: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
