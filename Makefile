# The two commands of the README:
#   make demo   dev server + worker + sample loans (prints the UI address)
#   make test   the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo worker test lint-templates clean gateway

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py

worker: install
	$(PY) worker.py

test: install
	$(PY) -m pytest

lint-templates: install
	$(PY) -m compliance.template_lint

clean:
	rm -rf .dunning .pytest_cache

gateway: install
	$(PY) -m uvicorn gateway.app:app --port 8000
