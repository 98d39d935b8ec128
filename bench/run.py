"""``make bench``: the API's transfer throughput against the raw-SQL ceiling.

Runs under ``quickpe.embedded run`` (DATABASE_URL/REDIS_URL set). Steps, each printed with the
command that produced its numbers:

1. A fresh database ``quickpe_bench`` on the same server (the development database is never
   touched), migrated, with BENCH_USERS funded users and their access tokens.
2. pgbench running ``bench/transfer.sql`` (one API transfer's statements) at each concurrency.
3. For each gunicorn configuration: gunicorn on a free 127.0.0.1 port, then wrk with
   ``bench/transfer.lua`` (or ``bench.loadgen`` without wrk) at each concurrency.
4. A summary table, PASS/FAIL against the target, and everything as JSON in bench/results/.

While each run lasts, a sampler reads pg_stat_activity (what the bench database's backends
are doing: running, waiting for a lock, or idle inside a transaction while the client thinks)
and /proc (CPU of the gunicorn workers, of the PostgreSQL backends and of the whole machine),
so the report can say where the time goes.

Tuning through the environment (defaults in brackets): BENCH_DURATION [10] seconds per run,
BENCH_LEVELS [4,8,16,32], BENCH_CONFIGS [sync:2,sync:3,sync:4,gthread:2x4], BENCH_USERS [200],
BENCH_LOADGEN [auto|wrk|python], BENCH_BUDGET [280] seconds after which remaining runs are
skipped, BENCH_DATABASE [quickpe_bench].
"""

import contextlib
import json
import logging
import os
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
BENCH_DIR = BASE_DIR / "bench"
RESULTS_DIR = BENCH_DIR / "results"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")

TARGET_RATIO = 0.3
TARGET_P99_MS = 100.0

# Money limits raised so that no bench transfer is refused (README: "Configuration").
LIMITS_ENV = {
    "QUICKPE_MAX_PER_TRANSACTION": "100000000.00",
    "QUICKPE_DAILY_DEPOSIT_LIMIT": "1000000000.00",
    "QUICKPE_DAILY_OUTGOING_LIMIT": "1000000000.00",
    "QUICKPE_MAX_BALANCE": "100000000000.00",
    "QUICKPE_MONEY_RATE": "off",
    "QUICKPE_SIGNIN_RATE": "off",
    "QUICKPE_ACCESS_TOKEN_MINUTES": "120",
    "QUICKPE_REDIS_PREFIX": "quickpe-bench",
    "LOG_LEVEL": "WARNING",
}

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
logger = logging.getLogger("bench")


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show_command(command: list[str], env: dict[str, str] | None = None) -> str:
    prefix = " ".join(f"{key}={shlex.quote(value)}" for key, value in (env or {}).items())
    line = " ".join(shlex.quote(str(part)) for part in command)
    return f"{prefix} {line}".strip()


# --- Settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerConfig:
    name: str
    worker_class: str
    workers: int
    threads: int = 1

    @classmethod
    def parse(cls, text: str) -> "ServerConfig":
        """``sync:4`` or ``gthread:2x4`` (workers x threads)."""
        kind, _, size = text.partition(":")
        workers, _, threads = size.partition("x")
        if kind not in ("sync", "gthread"):
            raise SystemExit(f"BENCH_CONFIGS: unknown worker class in {text!r}")
        return cls(
            name=text,
            worker_class=kind,
            workers=int(workers),
            threads=int(threads or 1) if kind == "gthread" else 1,
        )

    @property
    def label(self) -> str:
        if self.worker_class == "sync":
            return f"{self.workers} workers sync"
        return f"{self.workers} workers x {self.threads} gthreads"

    def gunicorn_args(self) -> list[str]:
        args = ["--workers", str(self.workers), "--worker-class", self.worker_class]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        return args


@dataclass(frozen=True)
class Settings:
    duration: int
    levels: list[int]
    configs: list[ServerConfig]
    users: int
    loadgen: str
    budget: float
    database: str

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        loadgen = env.get("BENCH_LOADGEN", "auto")
        if loadgen == "auto":
            loadgen = "wrk" if shutil.which("wrk") else "python"
        elif loadgen == "wrk" and not shutil.which("wrk"):
            raise SystemExit("BENCH_LOADGEN=wrk but wrk is not on PATH")
        return cls(
            duration=int(env.get("BENCH_DURATION", "10")),
            levels=[int(level) for level in env.get("BENCH_LEVELS", "4,8,16,32").split(",")],
            configs=[
                ServerConfig.parse(item.strip())
                for item in env.get("BENCH_CONFIGS", "sync:2,sync:3,sync:4,gthread:2x4").split(",")
            ],
            users=int(env.get("BENCH_USERS", "200")),
            loadgen=loadgen,
            budget=float(env.get("BENCH_BUDGET", "280")),
            database=env.get("BENCH_DATABASE", "quickpe_bench"),
        )


# --- Database -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    url: str  # for Django (DATABASE_URL)
    conninfo: dict  # for psycopg and pgbench
    name: str

    @classmethod
    def beside(cls, url: str, name: str) -> "Database":
        """The database ``name`` on the server of ``url``."""
        from psycopg.conninfo import conninfo_to_dict

        parts = urlsplit(url)
        new_url = urlunsplit(parts._replace(path=f"/{name}"))
        conninfo = conninfo_to_dict(url)
        conninfo["dbname"] = name
        return cls(url=new_url, conninfo=conninfo, name=name)

    def connect(self, dbname: str | None = None):
        import psycopg

        return psycopg.connect(**{**self.conninfo, "dbname": dbname or self.name}, autocommit=True)

    def pgbench_args(self) -> list[str]:
        args = []
        for key, flag in (("host", "-h"), ("port", "-p"), ("user", "-U")):
            if self.conninfo.get(key):
                args += [flag, str(self.conninfo[key])]
        return args

    def pgbench_env(self) -> dict[str, str]:
        password = self.conninfo.get("password")
        return {"PGPASSWORD": password} if password else {}


def bench_database(name: str) -> tuple[str, "Database"]:
    """The development database's name, and the bench database ``name`` on the same server."""
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL is not set: run through `make bench`")
    return urlsplit(database_url).path.lstrip("/"), Database.beside(database_url, name)


def recreate_database(bench: Database, development: str) -> None:
    if bench.name == development:
        raise SystemExit(f"refusing to benchmark in the development database {development!r}")
    with bench.connect("postgres") as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{bench.name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{bench.name}"')


def bench_env(bench: Database) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": bench.url, **LIMITS_ENV}


# --- Measuring: pg_stat_activity and /proc ------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    with open("/proc/stat") as handle:
        values = [int(value) for value in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return total - idle, total


class Sampler(threading.Thread):
    """Every ``interval`` s: what each backend of the bench database is doing, and its CPU."""

    def __init__(self, bench: Database, interval: float = 0.1):
        super().__init__(daemon=True)
        self.bench, self.interval = bench, interval
        self.stop_event = threading.Event()
        self.samples = 0
        self.states: Counter = Counter()
        self.backend_cpu: dict[int, float] = {}
        self.backend_cpu_start: dict[int, float] = {}
        self.error: str | None = None

    def _snapshot(self, connection) -> list[tuple]:
        """(pid, state, wait type, wait event, table) per backend. A backend waiting for a row
        lock holds or awaits a 'tuple' lock on that row's table, which names the table."""
        tables = dict(
            connection.execute(
                "SELECT pid, min(relation::regclass::text) FROM pg_locks "
                "WHERE locktype = 'tuple' AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) GROUP BY pid"
            ).fetchall()
        )
        rows = connection.execute(
            "SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND backend_type = 'client backend'"
        ).fetchall()
        return [(*row, tables.get(row[0])) for row in rows]

    def run(self) -> None:
        try:
            with self.bench.connect() as connection:
                for pid, *_ in self._snapshot(connection):
                    cpu = proc_cpu_seconds(pid)
                    if cpu is not None:
                        self.backend_cpu_start[pid] = cpu
                while not self.stop_event.wait(self.interval):
                    rows = self._snapshot(connection)
                    self.samples += 1
                    for pid, state, wait_type, wait_event, table in rows:
                        self.states[classify(state, wait_type, wait_event, table)] += 1
                        cpu = proc_cpu_seconds(pid)
                        if cpu is not None:
                            self.backend_cpu[pid] = cpu
        except Exception as error:  # a broken sampler must not stop the bench
            self.error = repr(error)

    def finish(self) -> dict:
        self.stop_event.set()
        self.join(5)
        samples = max(self.samples, 1)
        cpu = sum(
            value - self.backend_cpu_start.get(pid, 0.0) for pid, value in self.backend_cpu.items()
        )
        return {
            "samples": self.samples,
            "avg_backends": {
                state: round(count / samples, 2) for state, count in self.states.most_common()
            },
            "pg_backend_cpu_s": round(cpu, 3),
            "error": self.error,
        }


def classify(
    state: str | None, wait_type: str | None, wait_event: str | None, table: str | None = None
) -> str:
    if state == "active":
        if wait_type is None:
            return "running"
        if wait_type == "Lock":
            return f"lock wait ({wait_event}{' on ' + table if table else ''})"
        if wait_type == "Client":
            return "running"
        return f"waiting {wait_type}:{wait_event}"
    if state in ("idle in transaction", "idle in transaction (aborted)"):
        return "idle in transaction"
    return state or "unknown"


class Measure:
    """CPU and backend states around one run."""

    def __init__(self, bench: Database, server_pids: list[int]):
        self.bench, self.server_pids = bench, server_pids

    def __enter__(self):
        self.sampler = Sampler(self.bench)
        self.sampler.start()
        self.children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.own = resource.getrusage(resource.RUSAGE_SELF)
        self.server_cpu = {pid: proc_cpu_seconds(pid) or 0.0 for pid in self.server_pids}
        self.machine = machine_jiffies()
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc):
        elapsed = time.monotonic() - self.started
        busy0, total0 = self.machine
        busy1, total1 = machine_jiffies()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        by_worker = {
            pid: (proc_cpu_seconds(pid) or start) - start for pid, start in self.server_cpu.items()
        }
        server = sum(by_worker.values())
        self.result = {
            **self.sampler.finish(),
            "elapsed_s": round(elapsed, 3),
            "app_cpu_s": round(server, 3),
            "app_busy_cores_by_worker": [
                round(value / elapsed, 2) for value in sorted(by_worker.values(), reverse=True)
            ],
            "loadgen_cpu_s": round(
                (children.ru_utime + children.ru_stime)
                - (self.children.ru_utime + self.children.ru_stime),
                3,
            ),
            "bench_process_cpu_s": round(
                (own.ru_utime + own.ru_stime) - (self.own.ru_utime + self.own.ru_stime), 3
            ),
            "machine_busy_cores": round((busy1 - busy0) / (total1 - total0) * os.cpu_count(), 2)
            if total1 > total0
            else None,
        }
        ours = (
            self.result["app_cpu_s"]
            + self.result["pg_backend_cpu_s"]
            + self.result["loadgen_cpu_s"]
            + self.result["bench_process_cpu_s"]
        )
        if self.result["machine_busy_cores"] is not None:
            self.result["other_busy_cores"] = round(
                max(self.result["machine_busy_cores"] - ours / max(elapsed, 1e-9), 0.0), 2
            )
        return False


# --- pgbench ------------------------------------------------------------------------------


def pgbench_path() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH) / "pgbench"


def percentiles_ms(values_us: list[float]) -> dict:
    from bench.loadgen import percentile

    values = sorted(values_us)
    return {
        f"p{name}": round(percentile(values, fraction) / 1000, 2)
        for name, fraction in (("50", 0.5), ("95", 0.95), ("99", 0.99))
    }


def run_pgbench(bench: Database, data: dict, level: int, duration: int, workdir: Path, tag: str):
    log_prefix = workdir / f"pgbench_c{level}"
    command = [
        str(pgbench_path()),
        "--no-vacuum",
        "--protocol=simple",
        f"--file={BENCH_DIR / 'transfer.sql'}",
        f"--client={level}",
        f"--jobs={min(level, 2)}",
        f"--time={duration}",
        "--max-tries=5",
        "--report-per-command",
        "--log",
        f"--log-prefix={log_prefix}",
        "-D",
        f"ubase={data['first_user_id']}",
        "-D",
        f"nusers={len(data['users'])}",
        "-D",
        f"nchains={data['audit_chains']}",
        "-D",
        f"run={tag}c{level}",
        "-D",
        "n=0",
        *bench.pgbench_args(),
        bench.name,
    ]
    shown = show_command(
        [
            "pgbench",
            *[
                arg
                if not str(arg).startswith(("--log-prefix", "--file"))
                else arg.replace(str(BASE_DIR) + "/", "")
                for arg in command[1:]
            ],
        ]
    )
    out(f"$ {shown}")
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration + 60,
        env={**os.environ, **bench.pgbench_env()},
        check=False,
    )
    text = completed.stdout + completed.stderr
    if completed.returncode != 0:
        out(text)
        raise RuntimeError(f"pgbench failed with exit code {completed.returncode}")
    latencies = []
    for path in workdir.glob(f"{log_prefix.name}.*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                latencies.append(float(fields[2]))
    statements = []
    in_statements = False
    for line in completed.stdout.splitlines():
        if line.startswith("statement latencies"):
            in_statements = True
            continue
        match = re.match(r"\s+([\d.]+)\s+\d+\s+\d+\s+(.*)", line) if in_statements else None
        if match and not match.group(2).startswith("\\"):
            statements.append({"ms": float(match.group(1)), "statement": match.group(2)[:60]})

    def number(pattern: str) -> float:
        found = re.search(pattern, completed.stdout)
        return float(found.group(1)) if found else float("nan")

    return {
        "command": shown,
        "concurrency": level,
        "tps": number(r"tps = ([\d.]+) \(without initial connection time\)"),
        "transactions": int(number(r"number of transactions actually processed: (\d+)")),
        "failed": int(number(r"number of failed transactions: (\d+)")),
        "retried": int(number(r"number of transactions retried: (\d+)")),
        "latency_avg_ms": number(r"latency average = ([\d.]+) ms"),
        **percentiles_ms(latencies),
        "statements_ms": statements,
    }


# --- gunicorn -----------------------------------------------------------------------------


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != 8000:
            return port


class Gunicorn:
    """One gunicorn master in its own session; ``stop()`` ends it and its workers."""

    def __init__(self, config: ServerConfig, env: dict[str, str], log_path: Path):
        self.config, self.env, self.log_path = config, env, log_path
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.command = [
            PY,
            "-m",
            "gunicorn",
            "-c",
            "python:quickpe.gunicorn_conf",
            "quickpe.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            *config.gunicorn_args(),
            "--timeout",
            "30",
            "--graceful-timeout",
            "5",
            "--log-level",
            "warning",
        ]

    @property
    def shown(self) -> str:
        env = {key: LIMITS_ENV[key] for key in ("QUICKPE_MONEY_RATE", "QUICKPE_SIGNIN_RATE")}
        env["DATABASE_URL"] = "<quickpe_bench>"
        return show_command(["gunicorn", *self.command[3:]], env)

    def start(self, timeout: float = 40) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.command,
            cwd=BASE_DIR,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C goes to us; we stop it (and only it) in stop()
            preexec_fn=_die_with_parent,  # no other thread runs while it starts
        )
        _running.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.log_path}")
            with contextlib.suppress(OSError):
                connection = HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/health/live")
                if connection.getresponse().status == 200:
                    connection.close()
                    # Every worker must be up before measuring: wait for the expected count.
                    while len(self.worker_pids()) < self.config.workers:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"gunicorn workers did not start; {self.log_path}")
                        time.sleep(0.1)
                    return
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid) if self.process else []

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only its workers
                self.process.wait(timeout=5)
        self.log.close()
        if self in _running:
            _running.remove(self)
        self.process = None


_running: list[Gunicorn] = []


def _die_with_parent() -> None:
    """In the gunicorn child: get SIGTERM if bench.run dies without cleaning up (SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_all() -> None:
    for server in list(_running):
        server.stop()


# --- Load generation ----------------------------------------------------------------------


def write_lua_users(users: list[dict], path: Path) -> None:
    tokens = ",\n".join(json.dumps(user["access"]) for user in users)
    ids = ",\n".join(json.dumps(user["quickpe_id"]) for user in users)
    path.write_text(f"return {{\ntokens = {{\n{tokens}\n}},\nids = {{\n{ids}\n}}\n}}\n")
    path.chmod(0o600)


def run_load(
    settings: Settings,
    *,
    port: int,
    users: list[dict],
    users_lua: Path,
    level: int,
    duration: int,
    key_prefix: str,
) -> tuple[str, dict]:
    if settings.loadgen == "wrk":
        command = [
            "wrk",
            "--threads",
            "1",
            "--connections",
            str(level),
            "--duration",
            f"{duration}s",
            "--timeout",
            "10s",
            "--script",
            str(BENCH_DIR / "transfer.lua"),
            f"http://127.0.0.1:{port}/api/v1/transfers",
            "--",
            str(users_lua),
            key_prefix,
        ]
        shown = show_command(
            [
                part.replace(str(BASE_DIR) + "/", "").replace(str(users_lua), "<users.lua>")
                for part in command
            ]
        )
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 60, check=False
        )
        for line in completed.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return shown, json.loads(line.removeprefix("BENCH_JSON "))
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    from bench import loadgen

    shown = (
        f"python -m bench.loadgen (in-process: {level} threads, keep-alive http.client, "
        f"{duration}s, POST http://127.0.0.1:{port}/api/v1/transfers)"
    )
    return shown, loadgen.run(
        host="127.0.0.1",
        port=port,
        users=users,
        concurrency=level,
        duration=duration,
        key_prefix=key_prefix,
    )


def api_row(config: ServerConfig, level: int, shown: str, raw: dict, measured: dict, log: str):
    seconds = raw["duration_us"] / 1e6
    statuses = {str(key): value for key, value in raw["statuses"].items()}
    ok = statuses.get("201", 0)
    kinds = ("connect", "read", "write", "timeout")
    socket_errors = sum(raw["errors"].get(kind, 0) for kind in kinds)
    errors = socket_errors + sum(value for key, value in statuses.items() if key != "201")
    latency = raw["latency_us"]
    completed = max(raw["requests"], 1)
    return {
        "config": config.name,
        "label": config.label,
        "concurrency": level,
        "command": shown,
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "ok_rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": round(latency["p50"] / 1000, 2),
        "p95_ms": round(latency["p95"] / 1000, 2),
        "p99_ms": round(latency["p99"] / 1000, 2),
        "max_ms": round(latency["max"] / 1000, 2),
        "errors": errors,
        "socket_errors": raw["errors"],
        "statuses": statuses,
        "db_retries_logged": log.count("retrying after"),
        "server_errors_logged": log.count("Traceback"),
        "app_cpu_ms_per_req": round(measured["app_cpu_s"] * 1000 / completed, 2),
        "pg_cpu_ms_per_req": round(measured["pg_backend_cpu_s"] * 1000 / completed, 2),
        "loadgen_cpu_ms_per_req": round(
            (measured["loadgen_cpu_s"] + measured["bench_process_cpu_s"]) * 1000 / completed, 2
        ),
        "measure": measured,
    }


def run_profile(env: dict[str, str], users_json: Path, requests: int = 300) -> dict | None:
    out("\n[4/4] Where one transfer's CPU goes: in-process, one thread, no HTTP server")
    shown = show_command(
        ["python", "-m", "bench.profile", "<users.json>", str(requests)],
        {"DATABASE_URL": "<quickpe_bench>"},
    )
    out(f"$ {shown}")
    completed = subprocess.run(
        [PY, "-m", "bench.profile", str(users_json), str(requests)],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        out(f"  profile failed (exit {completed.returncode}): {completed.stderr[-2000:]}")
        return None
    profile = json.loads(lines[-1])
    profile["command"] = shown
    out(f"  {'CPU ms':>7}  {'wall ms':>7}  per request ({profile['requests']} requests)")
    for step in profile["steps"]:
        out(f"  {step['cpu_ms']:7.3f}  {step['wall_ms']:7.3f}  {step['label']}")
    out(
        f"  SQL statements through Django's cursor per request: "
        f"{profile['sql_statements_per_request']} (plus BEGIN/COMMIT and the "
        "CONN_HEALTH_CHECKS 'SELECT 1')"
    )
    return profile


# --- Reporting ----------------------------------------------------------------------------


def fmt_states(states: dict) -> str:
    short = {
        "running": "run",
        "idle in transaction": "idle-in-tx",
        "idle": "idle",
    }
    parts = []
    for state, value in states.items():
        name = short.get(state, state.replace("lock wait ", "lock").replace("waiting ", ""))
        parts.append(f"{name} {value:g}")
    return ", ".join(parts) or "-"


def verdict(row: dict) -> bool:
    return (
        row.get("ratio") is not None
        and row["ratio"] >= TARGET_RATIO
        and row["p99_ms"] < TARGET_P99_MS
        and row["errors"] == 0
    )


def print_pgbench_result(result: dict) -> None:
    measured = result["measure"]
    per_tx = max(result["transactions"], 1)
    out(
        f"  -> {result['tps']:.1f} tps, latency avg {result['latency_avg_ms']:.2f} ms, "
        f"p50 {result['p50']:.2f} / p95 {result['p95']:.2f} / p99 {result['p99']:.2f} ms, "
        f"failed {result['failed']}, retried {result['retried']}; "
        f"pg CPU {measured['pg_backend_cpu_s'] * 1000 / per_tx:.2f} ms/tx, "
        f"pgbench CPU {measured['loadgen_cpu_s'] * 1000 / per_tx:.2f} ms/tx, "
        f"machine busy {measured['machine_busy_cores']} cores "
        f"(other processes {measured.get('other_busy_cores')}); "
        f"backends: {fmt_states(measured['avg_backends'])}"
    )


def print_api_result(row: dict) -> None:
    measured = row["measure"]
    statuses = " ".join(f"{code}:{count}" for code, count in sorted(row["statuses"].items()))
    out(
        f"  -> {row['rps']:.1f} req/s, p50 {row['p50_ms']:.1f} / p95 {row['p95_ms']:.1f} / "
        f"p99 {row['p99_ms']:.1f} ms, errors {row['errors']} [{statuses}], "
        f"ratio {row['ratio_text']}; CPU/req app {row['app_cpu_ms_per_req']:.2f} ms, "
        f"pg {row['pg_cpu_ms_per_req']:.2f} ms, loadgen {row['loadgen_cpu_ms_per_req']:.2f} ms; "
        f"machine busy {measured['machine_busy_cores']} cores "
        f"(other processes {measured.get('other_busy_cores')}), workers "
        f"{'+'.join(f'{v:g}' for v in measured['app_busy_cores_by_worker'])}; "
        f"backends: {fmt_states(measured['avg_backends'])}"
        + (f"; {row['db_retries_logged']} deadlock retries" if row["db_retries_logged"] else "")
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    line = "  ".join(f"{{:>{width}}}" for width in widths)
    separator = "  ".join("-" * width for width in widths)
    return "\n".join([line.format(*headers), separator, *(line.format(*row) for row in rows)])


def cpu_budget(report: dict) -> list[str]:
    """CPU per transfer on each side, and the throughput that CPU allows on this machine."""
    cpus = report["machine"]["cpus"]
    lines = []
    at8 = next((r for r in report["pgbench"] if r["concurrency"] == 8), None)
    if at8:
        measured = at8["measure"]
        per_tx = max(at8["transactions"], 1)
        pg = measured["pg_backend_cpu_s"] * 1000 / per_tx
        client = measured["loadgen_cpu_s"] * 1000 / per_tx
        lines.append(
            f"CPU per transfer, pgbench at 8 clients: PostgreSQL {pg:.2f} ms + pgbench "
            f"{client:.2f} ms = {pg + client:.2f} ms -> at most ~{cpus * 1000 / (pg + client):.0f}"
            f"/s on {cpus} CPUs"
        )
    headline = (report.get("fastest") or {}).get("headline")
    if headline:
        app, pg = headline["app_cpu_ms_per_req"], headline["pg_cpu_ms_per_req"]
        client = headline["loadgen_cpu_ms_per_req"]
        total = app + pg + client
        lines.append(
            f"CPU per transfer, API at 8 connections ({headline['label']}): gunicorn/Django "
            f"{app:.2f} ms + PostgreSQL {pg:.2f} ms + load generator {client:.2f} ms = "
            f"{total:.2f} ms -> at most ~{cpus * 1000 / total:.0f}/s on {cpus} CPUs"
        )
    return lines


def summary(report: dict) -> str:
    pg = {result["concurrency"]: result for result in report["pgbench"]}
    lines = ["", "=" * 100, "SUMMARY  POST /api/v1/transfers vs pgbench (bench/transfer.sql)", ""]
    pg_rows = [
        [
            str(level),
            f"{result['tps']:.1f}",
            f"{result['p50']:.2f}",
            f"{result['p95']:.2f}",
            f"{result['p99']:.2f}",
            str(result["failed"]),
        ]
        for level, result in sorted(pg.items())
    ]
    lines.append("pgbench (raw SQL ceiling): " + report["commands"]["pgbench"])
    if 8 in pg:
        lines.append(f"Raw-SQL ceiling at 8 clients: {pg[8]['tps']:.1f} tps")
    lines.append(table(["clients", "tps", "p50 ms", "p95 ms", "p99 ms", "failed"], pg_rows))
    lines.append("")
    lines.append(f"API ({report['loadgen']}): " + report["commands"]["api"])
    api_rows = [
        [
            row["label"],
            str(row["concurrency"]),
            f"{row['rps']:.1f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            str(row["errors"]),
            " ".join(f"{code}:{count}" for code, count in sorted(row["statuses"].items())) or "-",
            f"{row['pgbench_tps']:.1f}" if row.get("pgbench_tps") else "-",
            row["ratio_text"],
            f"{row['app_cpu_ms_per_req']:.2f}",
            f"{row['pg_cpu_ms_per_req']:.2f}",
            "PASS" if verdict(row) else "FAIL",
        ]
        for row in report["api"]
    ]
    lines.append(
        table(
            [
                "gunicorn",
                "conc",
                "req/s",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "errors",
                "statuses",
                "pgbench tps",
                "ratio",
                "app CPU ms/req",
                "pg CPU ms/req",
                "target",
            ],
            api_rows,
        )
    )
    lines.append("")
    fastest = report.get("fastest")
    if fastest:
        lines.append(
            f"Fastest gunicorn configuration: {fastest['label']} "
            f"(peak {fastest['peak_rps']:.1f} req/s at {fastest['peak_concurrency']} connections)"
        )
        headline = fastest.get("headline")
        target = (
            f"ratio >= {TARGET_RATIO} with p99 < {TARGET_P99_MS:.0f} ms and no errors"
            " (same concurrency as pgbench)"
        )
        if headline:
            lines.append(
                f"Target {target}: {'PASS' if verdict(headline) else 'FAIL'} at "
                f"{headline['concurrency']} clients ({headline['label']}: ratio "
                f"{headline['ratio_text']}, p99 {headline['p99_ms']:.1f} ms, "
                f"errors {headline['errors']})"
            )
        passing = [str(row["concurrency"]) for row in fastest["rows"] if verdict(row)]
        lines.append(
            f"  levels meeting the target with {fastest['label']}: "
            f"{', '.join(passing) if passing else 'none'}"
        )
    lines.extend(cpu_budget(report))
    if report.get("skipped"):
        lines.append(f"Skipped (time budget): {', '.join(report['skipped'])}")
    lines.append(f"Results: {report.get('results_file', '-')}")
    lines.append("=" * 100)
    return "\n".join(lines)


# --- Main ---------------------------------------------------------------------------------


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    started = time.monotonic()
    development, bench = bench_database(settings.database)
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "settings": {
            "duration_s": settings.duration,
            "levels": settings.levels,
            "configs": [config.name for config in settings.configs],
            "users": settings.users,
            "loadgen": settings.loadgen,
            "database": settings.database,
        },
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "loadgen": settings.loadgen,
        "pgbench": [],
        "api": [],
        "skipped": [],
        "commands": {},
    }

    out(
        f"QuickPe bench: {settings.users} users, {settings.duration}s per run, concurrency "
        f"{settings.levels}, gunicorn {[c.label for c in settings.configs]}, "
        f"load generator {settings.loadgen}; {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start"
    )
    if settings.loadgen == "python":
        out("  (wrk not found: the Python load generator shares the CPUs with the server)")

    with tempfile.TemporaryDirectory(prefix="quickpe-bench-") as temp:
        workdir = Path(temp)
        env = bench_env(bench)

        # 1. The bench database.
        out(f"\n[1/4] Fresh database {bench.name!r} (the {development!r} database is untouched)")
        recreate_database(bench, development)
        migrate = [PY, "manage.py", "migrate", "--no-input", "-v", "0"]
        out(f"$ {show_command(['python', *migrate[1:]], {'DATABASE_URL': '<quickpe_bench>'})}")
        subprocess.run(migrate, cwd=BASE_DIR, env=env, check=True, timeout=180)
        users_json = workdir / "users.json"
        setup = [PY, "-m", "bench.setup_data", str(users_json)]
        out(
            "$ "
            + show_command(
                ["python", "-m", "bench.setup_data", "<users.json>"],
                {"DATABASE_URL": "<quickpe_bench>", "BENCH_USERS": str(settings.users)},
            )
        )
        subprocess.run(
            setup,
            cwd=BASE_DIR,
            env={**env, "BENCH_USERS": str(settings.users)},
            check=True,
            timeout=300,
        )
        data = json.loads(users_json.read_text())
        if not data["contiguous"]:
            raise RuntimeError("bench user ids are not contiguous; run `make bench` again")
        out(
            f"  -> {len(data['users'])} users (ids {data['first_user_id']}.."
            f"{data['first_user_id'] + len(data['users']) - 1}), each with "
            f"{data['funds_paise'] / 100:,.2f} INR, access tokens minted with tokens_issue "
            f"({data['seconds']}s); {data['audit_chains']} audit chains"
        )
        users_lua = workdir / "users.lua"
        write_lua_users(data["users"], users_lua)

        # 2. pgbench.
        out(f"\n[2/4] Raw-SQL ceiling: pgbench with bench/transfer.sql ({pgbench_path()})")
        for level in settings.levels:
            with Measure(bench, []) as measure:
                result = run_pgbench(bench, data, level, settings.duration, workdir, tag)
            result["measure"] = measure.result
            report["pgbench"].append(result)
            print_pgbench_result(result)
        report["commands"]["pgbench"] = (
            "pgbench --no-vacuum --protocol=simple --file=bench/transfer.sql --client=N "
            f"--jobs=min(N,2) --time={settings.duration} ... {bench.name}"
        )
        at8 = next((r for r in report["pgbench"] if r["concurrency"] == 8), None)
        if at8:
            out("  per-statement latency at 8 clients (ms): ")
            for statement in at8["statements_ms"]:
                out(f"    {statement['ms']:7.3f}  {statement['statement']}")
        pg_tps = {result["concurrency"]: result["tps"] for result in report["pgbench"]}

        # 3. The API under gunicorn.
        out(f"\n[3/4] API: POST /api/v1/transfers under gunicorn, load from {settings.loadgen}")
        for config in settings.configs:
            needed = len(settings.levels) * (settings.duration + 1) + 10
            if time.monotonic() - started + needed > settings.budget:
                report["skipped"].append(config.label)
                out(f"  skipping {config.label}: the {settings.budget:.0f}s budget would be passed")
                continue
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            log_path = RESULTS_DIR / f"gunicorn-{tag}-{config.name.replace(':', '-')}.log"
            server = Gunicorn(config, env, log_path)
            out(f"\n$ {server.shown}")
            try:
                server.start()
                workers = server.worker_pids()
                out(f"  gunicorn on 127.0.0.1:{server.port}, workers {workers}; warming up 2s")
                run_load(
                    settings,
                    port=server.port,
                    users=data["users"],
                    users_lua=users_lua,
                    level=4,
                    duration=2,
                    key_prefix=f"{tag}-{config.name}-warmup",
                )
                for level in settings.levels:
                    offset = server.log_size()
                    with Measure(bench, workers) as measure:
                        shown, raw = run_load(
                            settings,
                            port=server.port,
                            users=data["users"],
                            users_lua=users_lua,
                            level=level,
                            duration=settings.duration,
                            key_prefix=f"{tag}-{config.name}-{level}",
                        )
                    out(f"$ {shown}")
                    log = server.log_since(offset)
                    row = api_row(config, level, shown, raw, measure.result, log)
                    row["pgbench_tps"] = pg_tps.get(level)
                    row["ratio"] = (
                        round(row["ok_rps"] / pg_tps[level], 3) if pg_tps.get(level) else None
                    )
                    row["ratio_text"] = f"{row['ratio']:.3f}" if row["ratio"] is not None else "-"
                    report["api"].append(row)
                    print_api_result(row)
            finally:
                server.stop()
        report["commands"]["api"] = (
            "QUICKPE_MONEY_RATE=off QUICKPE_SIGNIN_RATE=off DATABASE_URL=<quickpe_bench> "
            "gunicorn quickpe.wsgi:application --bind 127.0.0.1:<free port> <config>; then "
            + (
                "wrk --threads 1 --connections N --duration "
                f"{settings.duration}s --timeout 10s --script bench/transfer.lua URL -- "
                "<users.lua> <key prefix>"
                if settings.loadgen == "wrk"
                else f"bench.loadgen with N threads for {settings.duration}s"
            )
        )

        # 4. Where the API's CPU goes.
        if time.monotonic() - started + 20 > settings.budget:
            report["skipped"].append("profile")
        else:
            report["profile"] = run_profile(env, users_json)

    # Fastest configuration: the highest throughput it reached at any concurrency.
    by_config = defaultdict(list)
    for row in report["api"]:
        by_config[row["config"]].append(row)
    if by_config:
        name, rows = max(by_config.items(), key=lambda item: max(r["ok_rps"] for r in item[1]))
        peak = max(rows, key=lambda r: r["ok_rps"])
        report["fastest"] = {
            "config": name,
            "label": rows[0]["label"],
            "peak_rps": peak["ok_rps"],
            "peak_concurrency": peak["concurrency"],
            "headline": next((r for r in rows if r["concurrency"] == 8), None),
            "rows": rows,
        }
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results_file = RESULTS_DIR / f"bench-{tag}.json"
    report["results_file"] = str(results_file.relative_to(BASE_DIR))
    serialisable = {
        **report,
        "fastest": {k: v for k, v in report.get("fastest", {}).items() if k != "rows"},
    }
    results_file.write_text(json.dumps(serialisable, indent=2, default=str))
    shutil.copyfile(results_file, RESULTS_DIR / "latest.json")
    out(summary(report))
    out(f"(whole bench: {report['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    from bench import lifecycle

    lifecycle.run(main, stop_all=stop_all, out=out, stopping="stopping gunicorn")
