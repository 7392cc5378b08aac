# The two commands of the README:
#   make demo   dev server + worker + sample loans (prints the UI address)
#   make test   the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo worker test audit lock lint-templates lint-imports clean gateway bench bench-smoke bench-cost bench-placement

# make install: .venv holds exactly requirements.lock, nothing resolved here:
# the locked versions, hash-checked and without dependencies (the lock has
# them all), then the project itself, editable, without dependencies and
# without build isolation (its build backend, setuptools, is locked too).
# scripts/check_lock.py then uninstalls what the lock does not name (saying
# so) and fails, naming each package, if .venv differs from the lock or the
# lock from pyproject.toml. Each make install checks again (a fraction of a
# second) and installs the lock again when .venv has drifted.
$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) scripts/check_lock.py --remove-extras
	touch $@

install: $(VENV)/.installed
	@$(PY) scripts/check_lock.py --quiet >/dev/null || { \
	  echo "make install: .venv differs from requirements.lock; installing the lock again" >&2; \
	  rm -f $(VENV)/.installed; $(MAKE) --no-print-directory $(VENV)/.installed; }

demo: install
	$(PY) scripts/demo.py

worker: install
	$(PY) worker.py

# The database tests run on SQLite and on PostgreSQL (tests/conftest.py):
# scripts/ensure_postgres.sh first installs (Debian) and starts a private
# server in .dunning/pg, unless DUNNING_TEST_POSTGRES_URL names one or
# DUNNING_TEST_POSTGRES=off. Without a server the postgresql variants skip,
# or with DUNNING_TEST_POSTGRES=required (CI) fail.
#
# All of the tests (every marker, both databases), on TEST_WORKERS processes
# (pytest-xdist), 2 by default: this machine and CI have 2 cores, and a fixed
# count keeps the schedule the same everywhere (more workers than cores only
# fight over them: the crash and dev-server tests run processes of their own,
# the contact properties a process per core). --dist loadfile keeps each test
# file on one worker (some share a module's fixtures); --no-loadscope-reorder
# keeps the files in the order tests/conftest.py gives them under xdist, the
# longest first (LONGEST_FILES), so that no long file starts last. Serially
# the suite took over 15 min on 2 cores; like this about 9.
TEST_WORKERS ?= 2
test: install
	@if [ "$${DUNNING_TEST_POSTGRES:-auto}" != off ] && [ -z "$${DUNNING_TEST_POSTGRES_URL:-}" ] && \
	    ! bash scripts/ensure_postgres.sh >/dev/null; then \
	  if [ "$${DUNNING_TEST_POSTGRES:-auto}" = required ]; then exit 1; fi; \
	  echo "make test: no PostgreSQL for the tests; their postgresql variants will skip" >&2; \
	fi
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The inner loop (~55 s on 2 cores): no `slow` or `devserver` tests, SQLite
# only, on both cores (pytest-xdist; a test file stays on one core, since some
# share a module's fixtures). make test runs everything.
.PHONY: test-fast
test-fast: install
	DUNNING_TEST_POSTGRES=off $(PY) -m pytest -n 2 --dist loadfile --no-loadscope-reorder -m "not slow and not devserver"

# Known vulnerabilities in what .venv has installed, which make install keeps
# equal to requirements.lock (docs/operations.md); e.g.
# make audit AUDIT_FLAGS="--ignore-vuln GHSA-xxxx --strict"
audit: install
	$(PY) scripts/audit_dependencies.py $(AUDIT_FLAGS)

# Write requirements.lock from pyproject.toml (dependencies, the dev extra and
# the build backend) with pip-tools, every package pinned with its hashes.
# Run it after changing pyproject.toml's dependencies and commit the lock with
# that change. The lock's pins are kept where pyproject.toml still allows them;
# make lock LOCK_FLAGS="--upgrade-package NAME" (or --upgrade, for all) moves on.
# pip-tools runs from a venv of its own (.dunning/pip-tools), not .venv.
PIP_TOOLS_VENV := .dunning/pip-tools
PIP_TOOLS := pip-tools==7.6.2 pip==26.3
$(PIP_TOOLS_VENV)/.installed:
	rm -rf $(PIP_TOOLS_VENV)
	$(PYTHON) -m venv $(PIP_TOOLS_VENV)
	$(PIP_TOOLS_VENV)/bin/python -m pip install -q $(PIP_TOOLS)
	touch $@

lock: $(PIP_TOOLS_VENV)/.installed
	[ ! -f requirements.lock ] || cp requirements.lock requirements.lock.new
	CUSTOM_COMPILE_COMMAND="make lock" $(PIP_TOOLS_VENV)/bin/pip-compile -q --generate-hashes \
	  --allow-unsafe --strip-extras --extra dev --all-build-deps --no-emit-index-url \
	  --no-emit-find-links $(LOCK_FLAGS) -o requirements.lock.new pyproject.toml
	@{ echo "# The locked dependencies: every package that make install puts in .venv (the project's"; \
	  echo "# dependencies, its dev extra, and setuptools to build it), pinned with hashes. make install"; \
	  echo "# installs exactly these (docs/operations.md). Linux x86_64, Python 3.11."; \
	  echo "# Refresh after changing pyproject.toml's dependencies: make lock"; \
	  cat requirements.lock.new; } > requirements.lock && rm requirements.lock.new
	@echo "requirements.lock: $$(grep -c '^[A-Za-z0-9].*==' requirements.lock) packages"

lint-templates: install
	$(PY) -m compliance.template_lint

# The layers (docs/architecture.md): no import runs up; the contracts are in .importlinter.
lint-imports: install
	$(VENV)/bin/lint-imports --no-cache

clean:
	-bash scripts/ensure_postgres.sh stop
	rm -rf .dunning .pytest_cache

# Both faces on one port (local use, the demo). In production run the two
# apart (docs/operations.md): the internal API on a private network only, the
# public edge (pay page, webhooks, payments, health) behind the internet proxy.
# Loading gateway.app:* sets up the worker's JSON logging (runtime/logging.py):
# uvicorn's access log comes out as JSON with /pay/<token> redacted.
gateway: install
	$(PY) -m uvicorn gateway.app:app --port 8000

.PHONY: gateway-internal gateway-public
gateway-internal: install
	$(PY) -m uvicorn gateway.app:internal_app --host 127.0.0.1 --port $${GATEWAY_INTERNAL_PORT:-8001}

gateway-public: install
	$(PY) -m uvicorn gateway.app:public_app --port $${GATEWAY_PUBLIC_PORT:-8000}

# The benchmark (docs/benchmarks.md): DunningWorkflow against a no-op floor,
# figures printed and written to bench/results.json; under 10 minutes on 2 cores.
bench: install
	$(PY) -m bench

bench-smoke: install
	$(PY) -m bench --smoke

# Placing 100,000 loans from a CSV against PostgreSQL, with the floor's start
# rate, then the KPI report over them timed (docs/benchmarks.md, "Placing
# 100,000 loans"). Not part of `make bench`: about half an hour on 2 cores.
bench-placement: install
	$(PY) -m bench.placement --loans 100000

# Cost per loan on Temporal Cloud (docs/benchmarks.md, "Cost per loan"): each
# policy's lifecycle on the time-skipping server, its Actions priced; the
# markdown tables on stdout, the numbers in .dunning/bench-cost.json. ~15 s.
bench-cost: install
	$(PY) -m bench.cost
