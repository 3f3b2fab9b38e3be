# Two commands on a fresh machine (each creates .venv on first use, then reuses it):
#   make book   build the executable book into _build/html (the main job)
#   make test   run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Omniglot archives: ../shared/data/omniglot when it exists (tests, CI), else the user cache.
SHARED_DATA := $(abspath ../shared/data/omniglot)
export MTLCODE_DATA ?= $(if $(wildcard $(SHARED_DATA)/*.zip),$(SHARED_DATA),)
export MPLBACKEND ?= Agg

.PHONY: setup test book demo lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,test]'
	touch $@

setup: $(BIN)/.installed

test: setup
	$(BIN)/python -m pytest

demo: setup
	$(BIN)/python -m mtlcode.demo

book: setup
	$(BIN)/jupyter-book build --warningiserror --keep-going .

lint: setup
	$(BIN)/ruff check mtlcode tests benchmarks

clean:
	rm -rf _build
