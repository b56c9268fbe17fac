# The two Quickstart commands: `make run` (the main job) and `make test` (the tests).
# Each creates .venv at the repo root and installs what it needs on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# A CPU build of torch lies on disk on our development and CI machines; pinning it keeps
# pip from pulling a multi-GB CUDA build. On a GPU machine: make TORCH=torch run
TORCH  ?= torch==2.13.0
ARGS   ?=

.PHONY: run test lint install clean-venv

BASE_STAMP := $(VENV)/.distillmeter-base
TEST_STAMP := $(VENV)/.distillmeter-test
# The tests also exercise the optional integrations that install from PyPI here
# (Parquet/datasets, Ray, MLflow, TRL's trainers, lm-eval on local tasks); vLLM needs a
# GPU, and its tests skip with the reason.
TEST_EXTRAS := pipelines,dev,data,ray,mlflow,trainer,eval

$(BASE_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[pipelines]'
	touch $(BASE_STAMP)

$(TEST_STAMP): $(BASE_STAMP)
	$(BIN)/python -m pip install -q -e '.[$(TEST_EXTRAS)]'
	touch $(TEST_STAMP)

install: $(BASE_STAMP)

## run: the built-in distillation default, end to end, metered (a few minutes on a laptop CPU)
run: $(BASE_STAMP)
	$(BIN)/distillmeter run $(ARGS)

## test: the test suite
test: $(TEST_STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

clean-venv:
	rm -rf $(VENV)
