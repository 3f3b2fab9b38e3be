# Two commands on a fresh machine (each creates .venv on first use, then reuses it):
#   make book   build the executable book into _build/html (the main job)
#   make test   run every test: unit tests, every notebook (nbval), the warning-free book build,
#               and the browser test of the built pages (needs chromium and chromedriver)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Omniglot archives: ../shared/data/omniglot when it exists (tests, CI), else the user cache.
SHARED_DATA := $(abspath ../shared/data/omniglot)
export MTLCODE_DATA ?= $(if $(wildcard $(SHARED_DATA)/*.zip),$(SHARED_DATA),)
# The book's models are small: one thread per process runs them about as fast as several and
# never stalls when other processes hold the cores (measured on 2 cores: a chapter took 9 s with
# one thread, 174 s with two under load). Override with e.g. `make book OMP_NUM_THREADS=8`.
export OMP_NUM_THREADS ?= 1

.PHONY: setup test unit notebooks readers book site demo lab lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,lab,test]'
	touch $@

setup: $(BIN)/.installed

test: unit notebooks readers book site

unit: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests

notebooks: setup
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider book

# The chapters and the student edition in a Colab-like venv (no book tools, mtlcode installed by
# the install cell), and `make lab` started and driven through one chapter.
readers: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests_readers

site: setup
	$(BIN)/python -m pytest -p no:cacheprovider tests_site

# JupyterLab on the book's notebooks; its kernel is the project's environment. Extra options go
# in LAB_ARGS, e.g. `make lab LAB_ARGS="--no-browser --port 8890"`.
lab: setup
	$(BIN)/jupyter lab --notebook-dir=book $(LAB_ARGS)

demo: setup
	$(BIN)/python -m mtlcode.demo

book: setup
	$(BIN)/jupyter-book build --warningiserror --keep-going .

lint: setup
	$(BIN)/ruff check mtlcode tests tests_site benchmarks

clean:
	rm -rf _build
