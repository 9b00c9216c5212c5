# The two commands in the README: `make demo` (set up + run the main job on the embedded default)
# and `make test` (set up + the whole test suite: lint, types, unit and integration tests).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit bench

setup:
	@bash .ci/setup

demo: setup
	$(BIN)/driftloop demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -ra -p no:cacheprovider

unit: setup
	$(BIN)/pytest -ra -m "not integration"

bench: setup
	$(BIN)/python -m bench
