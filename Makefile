# The README's commands. Everything installs into .venv from this repo's own files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Start embedded PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset; stop them afterwards.
WITH_SERVICES := $(PY) -m quickpe.embedded run --

.PHONY: install run test fuzz lint format bench bench-compare bench-tools bench-socketio test-tools screenshots stop clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(WITH_SERVICES) $(PY) -m quickpe.devstack

# Tests use their own Redis namespace, apart from a `make run` on the same machine.
test: install lint test-tools
	QUICKPE_REDIS_PREFIX=quickpe-test $(WITH_SERVICES) $(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Schemathesis with a larger budget and a fresh seed each run (make test runs a small fixed one).
# FUZZ_EXAMPLES=1000 for a longer hunt; a failure prints the curl command that reproduces it.
FUZZ_EXAMPLES ?= 150
fuzz: install
	QUICKPE_REDIS_PREFIX=quickpe-fuzz QUICKPE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) QUICKPE_FUZZ_SEED= \
		$(WITH_SERVICES) $(PY) -m pytest -p no:cacheprovider tests/test_api_fuzz.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(WITH_SERVICES) sh -c '$(PY) manage.py makemigrations --check --dry-run && \
		$(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null'

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every benchmark on the same services, each in its own database: transfers (bench.run),
# WebSocket fan-out beside a Socket.IO reference (bench.ws), statement exports (bench.exports),
# analytics (bench.analytics). All run even when one misses its target; the exit status says
# whether any did. BENCH_WS_LEVELS=1000 for a quick WebSocket run, BENCH_WS_SERVERS=quickpe
# (or socketio) for one side only; bench/ws.py lists every knob.
BENCHES := run ws exports analytics
bench: install bench-tools
	$(WITH_SERVICES) sh -c 'status=0; for b in $(BENCHES); do \
	  $(PY) -m bench.$$b || status=1; done; exit $$status'

# Two commits' transfer benchmarks side by side, alternately: make bench-compare BASE=<ref>
ROUNDS ?= 3
bench-compare: install bench-tools
	$(WITH_SERVICES) $(PY) -m bench.compare $(BASE) $(ROUNDS)

# Debian packages some targets use, installed only when the command is missing, when we are
# root and when apt knows the package (a stale package list gets one `apt-get update` and a
# second try). Otherwise it says why and goes on: what needs the package falls back or skips.
#   $(call apt_install,<command>,<package>,<what happens without it>)
APT_GET = DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq $(2) >/dev/null 2>&1
define apt_install
command -v $(1) >/dev/null 2>&1 || { \
  if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
    echo "$(1) not found and cannot apt-get $(2); $(3)"; \
  else \
    apt-cache policy $(2) 2>/dev/null | grep -q 'Candidate: [0-9]' \
      || timeout 120 apt-get update -qq >/dev/null 2>&1 || true; \
    if apt-cache policy $(2) 2>/dev/null | grep -q 'Candidate: [0-9]'; then \
      echo "installing $(2) (apt-get install -y $(2))"; \
      $(APT_GET) || { timeout 120 apt-get update -qq >/dev/null 2>&1; $(APT_GET); } \
        || echo "could not install $(2); $(3)"; \
    else echo "apt has no $(2) package; $(3)"; fi; \
  fi; }
endef

# wrk drives the API with little CPU; without it bench.run falls back to a Python load generator.
bench-tools: bench-socketio
	@$(call apt_install,wrk,wrk,bench uses the Python load generator)

# The Socket.IO reference bench.ws measures beside daphne (bench/socketio, Node 20): its pinned
# packages from package-lock.json into the git-ignored bench/socketio/node_modules, again only
# when the lock file changed. Without node or npm, bench.ws skips the reference and says so.
SIO_DIR := bench/socketio
bench-socketio:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  echo "node/npm not found: bench.ws skips the Socket.IO reference (QuickPe's numbers still print)"; \
	elif [ ! $(SIO_DIR)/node_modules/.package-lock.json -nt $(SIO_DIR)/package-lock.json ]; then \
	  echo "npm ci in $(SIO_DIR)"; \
	  (cd $(SIO_DIR) && npm ci --no-audit --no-fund --loglevel=error) \
	    || echo "npm ci failed: bench.ws skips the Socket.IO reference"; \
	fi

# Chromium (Debian's, driven by Playwright) for the browser tests; nginx for the test of the
# shipped deploy/ config.
test-tools:
	@$(call apt_install,chromium,chromium,the browser tests are skipped)
	@$(call apt_install,nginx,nginx,the nginx test is skipped)

# The dashboard's main pages at 1280 and 375 px, in Chromium, into screenshots/ (git-ignored).
screenshots: install test-tools
	$(WITH_SERVICES) $(PY) -m tests.screenshots

stop: install
	$(PY) -m quickpe.embedded stop

clean: stop
	rm -rf .data staticfiles
