# Two entry points (README): `make run` and `make test`. Both create .venv with pinned packages first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
STAMP  := $(VENV)/.installed

.PHONY: setup run test test-fast lint pull docs rulegraph clean-results

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

# Everything, as CI runs it, on two workers (tests/conftest.py: the end-to-end tests stay together on one); the 15
# slowest tests are listed at the end.
test: setup
	$(VENV)/bin/python -m pytest -n 2 --durations=15

# Unit tests only (no end-to-end run, nothing marked slow): about a minute.
test-fast: setup
	$(VENV)/bin/python -m pytest -m "not e2e and not slow" --durations=5

# After a pipeline run: the result blocks of README.md and docs/*.md from results/, and the workflow diagram.
docs: setup rulegraph
	$(VENV)/bin/python -m cryptomed docs

rulegraph: setup
	$(VENV)/bin/snakemake --rulegraph --quiet all | dot -Tsvg > docs/rulegraph.svg.tmp && mv docs/rulegraph.svg.tmp docs/rulegraph.svg

lint: setup
	$(VENV)/bin/snakemake --lint
