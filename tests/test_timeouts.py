"""PostgreSQL time limits: every connection has them, export builds get a longer statement limit
only while they run, and `migrate` has none (a lock wait past the limit in a request is a 503:
tests/test_retries.py)."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from quickpe import gunicorn_conf
from quickpe.db import statement_timeout
from tests.processes import BASE_DIR

pytestmark = pytest.mark.django_db


def show(name: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW {name}")
        return cursor.fetchone()[0]


def test_every_connection_has_statement_lock_and_idle_transaction_limits():
    assert show("statement_timeout") == "30s"
    assert show("lock_timeout") == "2s"
    assert show("idle_in_transaction_session_timeout") == "10s"


def test_a_frozen_worker_loses_its_locks_well_before_gunicorn_would_kill_it():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT setting::int FROM pg_settings WHERE name = %s",
            ["idle_in_transaction_session_timeout"],
        )
        idle_milliseconds = cursor.fetchone()[0]
    assert 0 < idle_milliseconds <= gunicorn_conf.timeout * 1000 / 2


def test_a_longer_statement_limit_lasts_only_as_long_as_the_block():
    with statement_timeout(600_000):
        assert show("statement_timeout") == "10min"
    assert show("statement_timeout") == "30s"


def settings_options(*argv: str) -> str:
    """The connection options Django would use when started as ``manage.py <argv>``."""
    code = (
        "import json, runpy, sys\n"
        "import django.core.management\n"
        "def show_options(argv):\n"
        "    from django.conf import settings\n"
        "    print(settings.DATABASES['default']['OPTIONS']['options'])\n"
        "django.core.management.execute_from_command_line = show_options\n"
        "sys.argv = ['manage.py', *json.loads(sys.argv[1])]\n"
        "runpy.run_path('manage.py', run_name='__main__')"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="quickpe.settings")
    result = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code, json.dumps(list(argv))],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def test_migrate_has_no_statement_limit_but_keeps_the_lock_limit():
    assert settings_options("migrate") == (
        "-c statement_timeout=0 -c lock_timeout=2000 -c idle_in_transaction_session_timeout=10000"
    )
    assert "-c statement_timeout=30000 " in settings_options("runserver")
