# Two entry points (README): `make run` and `make test`. Both create .venv with pinned packages first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: setup run test lint pull clean-results

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(VENV)/bin/snakemake --cores all

# A collaborator's clone: fetch ciphertext, models and weights from the DVC remote, check them against dvc.lock
# and mark them up to date for Snakemake (git and DVC do not keep modification times).
pull: setup
	$(VENV)/bin/python -m cryptomed pull

test: setup
	$(VENV)/bin/python -m pytest

lint: setup
	$(VENV)/bin/snakemake --lint
