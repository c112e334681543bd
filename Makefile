# Two commands do all the set-up on a fresh machine (Python >= 3.11):
#   make run    # creates .venv, installs the package, runs the main job on the synthetic default
#   make test   # creates .venv, installs the package with its test extra, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: run test bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python experiments/run.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/preprocess_bench.py $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
