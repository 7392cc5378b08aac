# The two commands of the README:
#   make demo   dev server + worker + sample loans (prints the UI address)
#   make test   the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo worker test audit lock lint-templates clean gateway bench bench-smoke

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

# The database tests run on SQLite and on PostgreSQL (tests/conftest.py):
# scripts/ensure_postgres.sh first installs (Debian) and starts a private
# server in .dunning/pg, unless DUNNING_TEST_POSTGRES_URL names one or
# DUNNING_TEST_POSTGRES=off. Without a server the postgresql variants skip,
# or with DUNNING_TEST_POSTGRES=required (CI) fail.
test: install
	@if [ "$${DUNNING_TEST_POSTGRES:-auto}" != off ] && [ -z "$${DUNNING_TEST_POSTGRES_URL:-}" ] && \
	    ! bash scripts/ensure_postgres.sh >/dev/null; then \
	  if [ "$${DUNNING_TEST_POSTGRES:-auto}" = required ]; then exit 1; fi; \
	  echo "make test: no PostgreSQL for the tests; their postgresql variants will skip" >&2; \
	fi
	$(PY) -m pytest

# Known vulnerabilities in requirements.lock (docs/operations.md); e.g.
# make audit AUDIT_FLAGS="--ignore-vuln GHSA-xxxx --strict"
audit: install
	$(PY) scripts/audit_dependencies.py $(AUDIT_FLAGS)

# Refresh requirements.lock from the environment make install built.
lock: install
	@{ echo "# The locked dependencies: every package the project and its dev extras install (.venv),"; \
	  echo "# pinned, for the dependency audit (make audit; docs/operations.md). Linux x86_64, Python 3.11."; \
	  echo "# Refresh after changing pyproject.toml's dependencies: make lock"; \
	  echo "#   (= .venv/bin/python -m pip freeze --exclude-editable, below these lines)"; \
	  $(PY) -m pip freeze --exclude-editable; } > requirements.lock.new && mv requirements.lock.new requirements.lock
	@echo "requirements.lock: $$(grep -c '==' requirements.lock) packages"

lint-templates: install
	$(PY) -m compliance.template_lint

clean:
	-bash scripts/ensure_postgres.sh stop
	rm -rf .dunning .pytest_cache

gateway: install
	$(PY) -m uvicorn gateway.app:app --port 8000

# The benchmark (docs/benchmarks.md): DunningWorkflow against a no-op floor,
# figures printed and written to bench/results.json; under 10 minutes on 2 cores.
bench: install
	$(PY) -m bench

bench-smoke: install
	$(PY) -m bench --smoke
