# One command to run, one to test. Python 3.11 and pip (torch comes from local wheels here).
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-all init clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

init: install
	python -m mumic_core init

run: init
	honcho start

test: install
	python -m pytest

test-all: install
	python -m pytest -m "slow or not slow"

clean:
	rm -rf $(VENV) mumic_data
