# The README's commands. Everything installs into .venv from this repo's own files.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Start embedded PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset; stop them afterwards.
WITH_SERVICES := $(PY) -m quickpe.embedded run --

.PHONY: install run test lint format bench stop clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(WITH_SERVICES) $(PY) -m quickpe.devstack

test: install lint
	$(WITH_SERVICES) $(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(WITH_SERVICES) $(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(WITH_SERVICES) $(PY) -m bench.run

stop: install
	$(PY) -m quickpe.embedded stop

clean: stop
	rm -rf .data staticfiles
