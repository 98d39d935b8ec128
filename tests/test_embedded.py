"""The embedded development services as `python -m quickpe.embedded` runs them, in a data
directory of the test's own: PostgreSQL starts again right after it crashed (no traceback, no
second try), and Redis keeps rate-limit windows through a crash."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg
import pytest

from quickpe import throttling
from tests.processes import BASE_DIR, Redis, wait_until


@pytest.fixture
def data_dir():
    # Short: Unix socket paths are limited to about 100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="qp-"))
    try:
        yield directory
    finally:
        embedded(directory, "stop")
        shutil.rmtree(directory, ignore_errors=True)


def embedded(directory: Path, action: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "quickpe.embedded", action],
        cwd=BASE_DIR,
        env={**os.environ, "QUICKPE_DATA_DIR": str(directory)},
        capture_output=True,
        text=True,
        timeout=180,
    )


def started(directory: Path) -> dict[str, str]:
    """``start``, which must succeed at once; the URLs it prints."""
    done = embedded(directory, "start")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.split())


def postmaster(directory: Path) -> psutil.Process:
    pid = int((directory / "postgres" / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


@pytest.mark.parametrize("killed", ["postmaster", "a server process"])
def test_start_right_after_postgresql_crashed_waits_for_it(data_dir, killed):
    """A killed postmaster leaves its pid file, a zombie and children still exiting; a killed
    server process sends the postmaster into crash recovery, refusing connections."""
    started(data_dir)
    server = postmaster(data_dir)
    victim = server if killed == "postmaster" else server.children()[0]
    victim.send_signal(signal.SIGKILL)

    urls = started(data_dir)
    with psycopg.connect(urls["DATABASE_URL"]) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_rate_limit_windows_survive_a_redis_crash(data_dir, settings):
    settings.REDIS_URL = started(data_dir)["REDIS_URL"]
    assert [throttling.hit("crash-test", "3/m") for _ in range(3)] == [None] * 3
    assert throttling.hit("crash-test", "3/m") > 0
    embedded_redis = Redis(data_dir / "redis")  # its socket is redis.sock there too
    wait_until(embedded_redis.has_written_its_log, what="the append-only file written")

    pid = int((data_dir / "redis" / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    started(data_dir)

    assert throttling.hit("crash-test", "3/m") > 0  # the window is still full
