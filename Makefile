# Two commands on a fresh machine (each creates .venv on first use, then reuses it):
#   make book   build the executable book, English into _build/html and Chinese into
#               _build/html/zh (the main job), and rewrite the reader notebooks readers/<lang>/book/
#   make test   run every test: unit and end-to-end tests, the notebooks where readers run them,
#               the warning-free book build (it runs every notebook), and the browser test of the
#               built pages of both editions (needs chromium, chromedriver and a CJK font)
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
# The book build and the tests hold the chapters to their prose: a claim that does not hold is an
# error (mtlcode.book.claim). A reader's own run (Colab, `make lab`) shows a note instead.
export MTLCODE_STRICT_CLAIMS ?= 1

.PHONY: setup test unit e2e notebooks readers reader-notebooks book book-zh site demo lab lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[book,lab,test]'
	touch $@

setup: $(BIN)/.installed

test: unit e2e readers book site
	@echo "== make test: every stage passed"

# $(call timed,NAME,COMMAND): run COMMAND and print how long stage NAME took (CI's log shows each
# stage's time, so the budget of 40 minutes can be watched), keeping COMMAND's exit status.
timed = start=$$(date +%s); $(2); status=$$?; echo "== stage $(1): $$(( $$(date +%s) - start )) s"; exit $$status

# The unit tests (a few minutes at most), then the end-to-end ones marked `slow`: the command line,
# torchrun, the grader and nbgrader in child processes, every benchmark script at a tiny size.
# Both run as many tests at once as there are cores (pytest-xdist).
PYTEST_PARALLEL ?= -n auto
unit: setup
	@$(call timed,unit,$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_PARALLEL) -m "not slow" tests)

e2e: setup
	@$(call timed,e2e,$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_PARALLEL) -m slow tests)

notebooks: setup
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider book

# The chapters and the student edition in a Colab-like venv (no book tools, mtlcode installed by
# the install cell), and `make lab` started and driven through one chapter.
readers: setup
	@$(call timed,readers,$(BIN)/python -m pytest -p no:cacheprovider tests_readers)

site: setup
	@$(call timed,site,$(BIN)/python -m pytest -p no:cacheprovider tests_site)

# JupyterLab on the reader notebooks (readers/en/book, readers/zh/book); its kernel is the
# project's environment. Extra options go in LAB_ARGS, e.g. `make lab LAB_ARGS="--no-browser --port 8890"`.
lab: setup
	MTLCODE_STRICT_CLAIMS=0 $(BIN)/jupyter lab --notebook-dir=readers $(LAB_ARGS)

demo: setup
	$(BIN)/python -m mtlcode.demo

# English first (its notebooks run once), then the Chinese edition from the same notebooks and
# the English run's outputs (mtlcode.book.translation): nothing runs twice. The reader notebooks
# are then rewritten with the values of this run.
# MTLCODE_BOOK_LANGUAGES: while the English notebooks run, each figure is also rendered with its texts
# translated (translations/<lang>/outputs.po, mtlcode.book.translation.outputs), for book-zh.
# The notebooks run first, as many at once as there are cores, into the build's execution cache
# (mtlcode.book.execute; every run is fresh: the cache it made is emptied first), which the English
# build then reads instead of running them one after another.
BOOK_LANGUAGES ?= en,zh
book: setup
	@rm -rf _build/.jupyter_cache
	@$(call timed,notebooks,MTLCODE_BOOK_LANGUAGES=$(BOOK_LANGUAGES) $(BIN)/python -m mtlcode.book.execute)
	@$(call timed,book (English),MTLCODE_BOOK_LANGUAGES=$(BOOK_LANGUAGES) $(BIN)/jupyter-book build --warningiserror --keep-going .)
	@$(BIN)/python -m mtlcode.book.execute --export _build/jupyter_execute
	@$(call timed,book (Chinese),$(MAKE) book-zh)
	@$(call timed,reader notebooks,$(MAKE) reader-notebooks)

# The reader notebooks readers/<lang>/book/*.ipynb (what Colab and `make lab` open), with the glued
# values of the English build's run recorded in readers/glued/ (mtlcode.book.readers).
reader-notebooks: setup
	$(BIN)/python -m mtlcode.book.readers --record _build/jupyter_execute

# The Chinese sources: English build's outputs with their printed lines, tables and figures
# translated (translations/zh/outputs.po; `python -m mtlcode.book.translation outputs zh` checks it).
book-zh: setup
	$(BIN)/python -m mtlcode.book.translation source zh _build/zh
	$(BIN)/jupyter-book build --warningiserror --keep-going _build/zh
	rm -rf _build/html/zh
	cp -r _build/zh/_build/html _build/html/zh

lint: setup
	$(BIN)/ruff check mtlcode tests tests_site benchmarks

clean:
	rm -rf _build
