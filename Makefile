# The two Quickstart commands: `make run` (the main job) and `make test` (the tests).
# Each creates .venv at the repo root and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.distillmeter-installed
# A CPU build of torch lies on disk on our development and CI machines; pinning it keeps
# pip from pulling a multi-GB CUDA build. On a GPU machine: make TORCH=torch run
TORCH  ?= torch==2.13.0
ARGS   ?=

.PHONY: run test lint install clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[pipelines,dev]'
	touch $(STAMP)

install: $(STAMP)

## run: the built-in distillation default, end to end, metered (a few minutes on a laptop CPU)
run: $(STAMP)
	$(BIN)/distillmeter run $(ARGS)

## test: the test suite
test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
