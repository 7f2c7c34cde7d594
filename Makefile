# Two commands for users (README): `make demo` and `make test`. Both create .venv when missing and
# install the project with the exact tested versions (constraints.txt); a second run is a quick no-op.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch is named in the same pip call so that pip takes the CPU build, not a multi-GB CUDA one.
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/secure-mor simulate --out runs/demo

test: $(STAMP)
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	tools/typecheck.sh

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite in quick mode: one table of ratios in benchmarks/results/latest.md (+ .json, raw logs).
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick

clean:
	rm -rf $(VENV) build dist .typecheck .mypy_cache .ruff_cache .pytest_cache
