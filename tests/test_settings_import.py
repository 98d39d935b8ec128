"""settings.py only reads the environment: importing it starts no process, writes no file and
does not look at the command line, whatever the environment holds. The embedded development
services are started before settings, by manage.py and `python -m quickpe.embedded run`.

Each case imports quickpe.settings in a new interpreter given only the case's variables, an
empty HOME, working directory and data folder (QUICKPE_DATA_DIR), and the command line of
`manage.py migrate`. A Python audit hook in that interpreter records every file opened for
writing, every file or folder made, changed or removed and every process started; the files of
the checkout are compared before and after."""

import json
import os
import subprocess
import sys

from tests.processes import BASE_DIR

UNREACHABLE = {
    "DATABASE_URL": "postgresql://127.0.0.1:1/x",
    "REDIS_URL": "redis://127.0.0.1:1/0",
}

WATCHED_IMPORT = """
import json, os, sys

WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.chmod", "os.chown", "os.truncate",
    "os.link", "os.symlink", "os.utime",
}
STARTS = {
    "subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn",
    "os.system",
}
done = []


def watch(event, args):
    if event == "open" and isinstance(args[2], int) and args[2] & WRITING:
        done.append(f"open {args[0]} for writing")
    elif event in CHANGES or event in STARTS:
        done.append(f"{event} {args[0]!r}")


sys.argv = ["manage.py", "migrate"]
sys.addaudithook(watch)
try:
    from quickpe import settings
except Exception as error:
    outcome, options = f"{type(error).__name__}: {error}", None
else:
    outcome, options = "imported", settings.DATABASES["default"]["OPTIONS"]["options"]
print(json.dumps({"outcome": outcome, "options": options, "done": done}))
"""


def checkout_files() -> dict[str, int]:
    """Every file of the checkout and its modification time, but for hidden folders (.git,
    .data where the test run's own services write, tools' caches) and __pycache__."""
    files = {}
    for folder, subfolders, names in os.walk(BASE_DIR):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        for name in names:
            path = os.path.join(folder, name)
            files[path] = os.stat(path).st_mtime_ns
    return files


def import_settings(tmp_path, environment: dict[str, str]) -> dict:
    home, cwd, data = tmp_path / "home", tmp_path / "cwd", tmp_path / "data"
    home.mkdir()
    cwd.mkdir()
    before = checkout_files()
    finished = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", WATCHED_IMPORT],
        cwd=cwd,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "PYTHONPATH": str(BASE_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",  # Python's bytecode cache is not the settings' doing
            "QUICKPE_DATA_DIR": str(data),
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr
    assert checkout_files() == before
    assert list(home.iterdir()) == list(cwd.iterdir()) == []
    assert not data.exists()
    return json.loads(finished.stdout)


def test_with_the_urls_and_a_key_settings_import_and_do_nothing_else(tmp_path):
    imported = import_settings(tmp_path, {**UNREACHABLE, "SECRET_KEY": "k" * 50})

    assert imported["outcome"] == "imported"
    assert imported["done"] == []
    # The command line says `migrate`; only manage.py reads it (tests/test_timeouts.py).
    assert "-c statement_timeout=30000 " in imported["options"]


def test_with_only_the_urls_settings_import_and_do_nothing_else(tmp_path):
    """The issue's own check: `python -c "import quickpe.settings"` with the URLs of servers
    that are not there starts nothing and writes nothing."""
    imported = import_settings(tmp_path, UNREACHABLE)

    assert imported["outcome"] == "imported"
    assert imported["done"] == []


def test_with_nothing_set_settings_refuse_and_start_nothing(tmp_path):
    imported = import_settings(tmp_path, {})

    assert imported["outcome"].startswith("ImproperlyConfigured: DATABASE_URL must be set: ")
    assert "python -m quickpe.embedded run" in imported["outcome"]
    assert imported["done"] == []


def test_django_does_not_start_without_a_secret_key(tmp_path):
    """Settings import without SECRET_KEY; setting Django up (what every server, worker and
    manage.py does) stops, saying what is missing."""
    finished = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=tmp_path,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "PYTHONPATH": str(BASE_DIR),
            "DJANGO_SETTINGS_MODULE": "quickpe.settings",
            "QUICKPE_DATA_DIR": str(tmp_path / "data"),
            **UNREACHABLE,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode != 0
    # Django's own check or ours (wallet.apps), whichever reads the key first.
    last_line = finished.stderr.strip().splitlines()[-1]
    assert last_line.startswith("django.core.exceptions.ImproperlyConfigured: ")
    assert "SECRET_KEY" in last_line
