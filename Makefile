# One command to run, one to test. Python 3.11 and pip (torch comes from local wheels here).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-run-$(shell cat requirements.txt | sha1sum | cut -c1-12)
TEST_STAMP := $(VENV)/.installed-test-$(shell cat requirements.txt requirements-test.txt | sha1sum | cut -c1-12)
export PATH := $(BIN):$(PATH)

MUMIC_HOME ?= mumic_data
STARTER_MINUTES ?= 35
STARTER_PACKAGES := tuxpaint-stamps-default fonts-noto-color-emoji librsvg2-bin unicode-data
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install install-test run test test-postgres test-all test-integrations lint bench-smoke init clean starter-model screenshots

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-run-* && touch $(STAMP)

# What the tests, lint and the benchmark checks need on top (requirements-test.txt).
$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	rm -f $(VENV)/.installed-test-* && touch $(TEST_STAMP)

install: $(STAMP)

install-test: $(TEST_STAMP)

init: install
	python -m mumic_core init

run: init
	honcho start

test: install-test
	python -m pytest

# Lint: ruff (lint and format), the layers' import contracts, no import cycles or unexplained
# imports inside functions.
lint: install-test
	ruff check .
	ruff format --check .
	lint-imports
	python scripts/import_report.py --strict

# The same suite against a throwaway PostgreSQL server on loopback (Debian's postgresql package).
test-postgres: install-test
	bash scripts/with_postgres.sh python -m pytest

# Label Studio for real: installs label-studio in its own venv (.venv-label-studio), starts it, and
# pre-labels a project, serves it as its ML backend and imports its export back (slow; CI runs it).
test-integrations: install-test
	python -m pytest -m slow tests/test_label_studio_real.py

test-all: install-test
	python -m pytest -m "slow or not slow"

# Every script under benchmarks/ at its smoke size (tiny inputs, results in a scratch folder):
# a benchmark that stops working fails here instead of going stale. CI runs it after the tests.
bench-smoke: install-test
	python benchmarks/_run_smoke.py

# The starter model: contrastive pretraining on drawings Debian ships with descriptions.
starter-model: install
	dpkg -s $(STARTER_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(STARTER_PACKAGES); }
	python -m mumic_core starter corpus
	python -m mumic_core pretrain --captions $(MUMIC_HOME)/starter-corpus/captions.csv \
		--minutes $(STARTER_MINUTES) --out $(MUMIC_HOME)/models/starter \
		--label "starter model pretrained on drawings (Tux Paint stamps and emoji), not CLIP"
	python -m mumic_core starter evaluate
	python -m mumic_core init

# Screenshots of every page, made by the end-to-end browser test (needs Debian's chromium).
screenshots: install-test
	MUMIC_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots python -m pytest tests/test_browser.py tests/test_review_keys.py -s

clean:
	rm -rf $(VENV) mumic_data .venv-label-studio .venv-fiftyone
