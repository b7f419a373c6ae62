# One way to run things, the same locally and in CI. `make demo` and `make test` create
# the virtual environment (.venv) on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint format bench clean

$(BIN)/rq: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/rq

demo: $(BIN)/rq
	$(BIN)/rq demo

test: $(BIN)/rq
	scripts/ensure-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -q -p no:cacheprovider --durations=15

check: test

format: $(BIN)/rq
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(BIN)/rq
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
