"""``make bench``, WebSocket part: how many event-stream connections one daphne process holds,
what each costs in memory and CPU, and how fast events get from a commit to the client, side by
side with a Socket.IO reference measured the same way in the same run.

Runs under ``quickpe.embedded run`` (DATABASE_URL/REDIS_URL set), after ``bench.run``:

1. A fresh database ``quickpe_bench_ws`` on the same server (``quickpe`` is never touched),
   migrated, with max(BENCH_WS_LEVELS) users: the first BENCH_WS_SENDERS signed up and funded
   through the services, the rest bulk-inserted; an access token per user (``bench.ws_django``).
   For the reference, each level's transfers recorded (``bench.ws_socketio``).
2. Per level, each server in turn on a free 127.0.0.1 port, started afresh (its file-descriptor
   limit raised; the same Redis, a Redis prefix of this run's own), with BENCH_WS_CLIENT_PROCS
   client processes (``bench.ws_client``, the same harness for both) sharing the users; a
   warm-up (a few connections opened and closed), then the server's RSS as the baseline.
   The order alternates per level (QuickPe first, then the reference first, ...) so that a
   drift of the machine's speed does not favour one. With one server only, it is started once
   and the connections of a level stay open for the next.

   - ``quickpe``: ONE daphne with the options ``make run`` gives it
     (``quickpe.daphne_tuning``), on that database.
   - ``socketio``: ONE Node process (``bench/socketio/server.js``): Socket.IO 4, the Redis
     adapter on the same Redis, the same access tokens verified (HS256, same key), a room per
     user. Skipped with a message when node or its packages are missing.
3. Each level N: connect until N users hold one authenticated connection each
   (BENCH_WS_CONNECT_CONCURRENCY at a time; connections accepted per second and server CPU per
   handshake), note the server's RSS and idle CPU, then make events for BENCH_WS_DURATION
   seconds at BENCH_WS_RATE transfers per second between users who hold connections:

   - QuickPe: ``transfer_create`` from another process (``bench.ws_django transfers``); every
     event id each user should get, taken from the database
     (``notifications_eventstream.last_seq`` before and after), is compared with the ids the
     clients received. Latency = receive time - the frame's ``ts`` (the event's
     ``created_at``, set just before commit; same clock).
   - Socket.IO: ``bench/socketio/publisher.js`` emits the frames the same transfers made in
     QuickPe (recorded in step 1: same users, same 7 events per transfer, same payloads) at
     the same rate to the users' rooms through Redis (@socket.io/redis-emitter), ``ts`` set
     just before each emit. "Lost" = an event the publisher emitted for a connected user that
     the user's client never got (by the ids in the frames).

   Both: lost, duplicated, unexpected, out of order; delivery p50/p95/p99; memory per
   connection ((RSS - RSS after warm-up) / connections); server CPU per delivered event (the
   server's CPU time in the event phase minus its idle rate over the same time, / events
   delivered).
4. With BENCH_WS_AWAY (default on): "replay while away", per server: two users connect and
   leave, one transfer's events are sent, they reconnect (QuickPe: resuming from the last id
   its hello gave) and the events that reach them are counted.
5. A table with the commands, PASS/FAIL of QuickPe against its target (10,000 connections on
   one process, p99 delivery < 100 ms, nothing lost), the ratios QuickPe / Socket.IO per level
   and one line per level for scripts (``bench.ws_report``):

       ws-vs-socketio connections=N p99_ratio=X mem_ratio=Y cpu_event_ratio=Z accept_ratio=W lost=L

   where the ratios are QuickPe's value over Socket.IO's (delivery p99, KB per connection, CPU
   ms per delivered event, connections accepted per second) and L is QuickPe's lost +
   duplicated + out-of-order events at that level (the reference's own are in the table).
   Everything also as JSON in bench/results/ws-*.json.

Knobs (defaults in brackets): BENCH_WS_LEVELS [1000,5000,10000] (e.g. 1000 for a quick run),
BENCH_WS_SERVERS [quickpe,socketio] (one of them alone: only QuickPe or only the reference),
BENCH_WS_DURATION [15] seconds of events per level, BENCH_WS_RATE [30] transfers/s (7 events
each), BENCH_WS_SENDERS [200], BENCH_WS_CLIENT_PROCS [2], BENCH_WS_CONNECT_CONCURRENCY [200],
BENCH_WS_DRAIN [10] seconds to wait for the last frames, BENCH_WS_BUDGET [900] seconds,
BENCH_WS_AWAY [1], BENCH_WS_AWAY_WAIT [3] seconds, BENCH_WS_SIO_TRANSFERS [0]: 1 runs
QuickPe's transfer driver beside the publisher in the reference's event phase, so that the
machine carries the same database work in both phases (its events reach no one),
BENCH_WS_DATABASE [quickpe_bench_ws], BENCH_WS_PROBE [0]: 1 runs daphne through
``bench.ws_daphne`` (the same daphne, plus an event-loop lag sampler, GC pause log and timers on
daphne's per-second sweeps over every connection) and reports, per level, the stalls, how many
slow frames they explain and the objects young collections promoted, and at the end what one
full collection costs; BENCH_WS_GC_FREEZE_EVERY [unset]: an experiment (implies the probe)
that calls gc.freeze() in daphne every so many seconds.
"""

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import resource
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench import ws_report, ws_socketio
from bench.run import (
    BASE_DIR,
    LIMITS_ENV,
    PY,
    RESULTS_DIR,
    Database,
    bench_database,
    free_port,
    machine_jiffies,
    out,
    proc_cpu_seconds,
    recreate_database,
    show_command,
)
from bench.ws_client import MODES, QUICKPE, SOCKETIO, next_event, open_stream
from bench.ws_report import TARGET_P99_MS
from quickpe.daphne_tuning import DAPHNE_OPTIONS

FD_HEADROOM = 4096  # beyond one descriptor per connection: Redis, PostgreSQL, pipes, logs


@dataclass(frozen=True)
class Settings:
    levels: list[int]
    duration: float
    rate: float
    senders: int
    client_procs: int
    connect_concurrency: int
    drain: float
    budget: float
    database: str
    probe: bool
    servers: list[str]
    away: bool
    sio_transfers: bool

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        levels = sorted({int(v) for v in env.get("BENCH_WS_LEVELS", "1000,5000,10000").split(",")})
        servers = [v.strip() for v in env.get("BENCH_WS_SERVERS", "quickpe,socketio").split(",")]
        settings = cls(
            levels=levels,
            duration=float(env.get("BENCH_WS_DURATION", "15")),
            rate=float(env.get("BENCH_WS_RATE", "30")),
            senders=int(env.get("BENCH_WS_SENDERS", "200")),
            client_procs=int(env.get("BENCH_WS_CLIENT_PROCS", "2")),
            connect_concurrency=int(env.get("BENCH_WS_CONNECT_CONCURRENCY", "200")),
            drain=float(env.get("BENCH_WS_DRAIN", "10")),
            budget=float(env.get("BENCH_WS_BUDGET", "900")),
            database=env.get("BENCH_WS_DATABASE", "quickpe_bench_ws"),
            probe=env.get("BENCH_WS_PROBE", "0").lower() in ("1", "true", "yes")
            or bool(env.get("BENCH_WS_GC_FREEZE_EVERY")),
            servers=list(dict.fromkeys(servers)),
            away=env.get("BENCH_WS_AWAY", "1").lower() in ("1", "true", "yes"),
            sio_transfers=env.get("BENCH_WS_SIO_TRANSFERS", "0").lower() in ("1", "true", "yes"),
        )
        if not levels or levels[0] < 2:
            raise SystemExit("BENCH_WS_LEVELS: each level needs at least 2 connections")
        if not servers or not set(servers) <= set(MODES):
            raise SystemExit(f"BENCH_WS_SERVERS: a comma-separated list of {', '.join(MODES)}")
        return settings

    @property
    def users(self) -> int:
        return self.levels[-1]

    @property
    def senders_used(self) -> int:
        return min(self.senders, self.levels[0])


# --- Processes ----------------------------------------------------------------------------

_children: list[subprocess.Popen] = []


def raise_nofile(wanted: int) -> int:
    """Raise this process's descriptor limit to ``wanted`` (the hard limit too when allowed:
    root); children inherit it. Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
        return wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _child_setup() -> None:
    """In each child: SIGTERM if bench.ws dies without cleaning up (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def spawn(command: list[str], env: dict[str, str], **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(
        command,
        cwd=BASE_DIR,
        env=env,
        start_new_session=True,  # Ctrl-C comes to us; we stop each child ourselves
        preexec_fn=_child_setup,
        **kwargs,
    )
    _children.append(process)
    return process


def stop(process: subprocess.Popen | None, timeout: float = 10) -> None:
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=5)


def stop_all() -> None:
    for process in reversed(_children):
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        stop(process)


class ServerProcess:
    """One server under test, alone on a free port of 127.0.0.1, in a session of its own."""

    side = ""  # quickpe or socketio
    label = ""  # the process, as the report names it
    probe_path: Path | None = None

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env, self.log_path = env, log_path
        self.port = free_port()
        while self.port == 8001:  # make run's daphne
            self.port = free_port()
        self.command: list[str] = []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def shown(self, nofile: int) -> str:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = spawn(self.command, self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited early; see {self.log_path}")
            if self.listening():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not listen within {timeout}s; see {self.log_path}")

    def listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def cpu(self) -> float:
        return proc_cpu_seconds(self.process.pid) or 0.0

    def established(self) -> int:
        """Server side: TCP connections of the listening port that are ESTABLISHED."""
        return sum(
            1
            for conn in self.ps.net_connections(kind="tcp")
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == self.port
        )

    def nofile(self) -> tuple[int, int]:
        return self.ps.rlimit(psutil.RLIMIT_NOFILE)

    def threads(self) -> int:
        return self.ps.num_threads()

    def tracked_objects(self, timeout: float = 20) -> dict | None:
        return None

    def full_collection(self, timeout: float = 20) -> dict | None:
        return None

    def stop(self) -> None:
        stop(self.process)
        if self.process is not None:
            self.log.close()


class Daphne(ServerProcess):
    side, label = QUICKPE, "daphne"

    def __init__(self, env: dict[str, str], log_path: Path, probe_path: Path | None = None):
        super().__init__(env, log_path)
        self.probe_path = probe_path
        if probe_path is not None:
            self.env = {**env, "BENCH_WS_PROBE_FILE": str(probe_path)}
        self.command = [
            PY,
            "-m",
            "bench.ws_daphne" if probe_path is not None else "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            *DAPHNE_OPTIONS,  # as `make run` runs it
            "quickpe.asgi:application",
        ]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events/"

    def shown(self, nofile: int) -> str:
        return (
            show_command(
                ["python", *self.command[1:]],
                {"DATABASE_URL": "<quickpe_bench_ws>", "QUICKPE_REDIS_PREFIX": "<unique>"},
            )
            + f" (RLIMIT_NOFILE {nofile})"
        )

    def tracked_objects(self, timeout: float = 20) -> dict | None:
        """With the probe: the objects daphne's cycle collector tracks (SIGUSR1, then read the
        probe's answer). Walking them stalls daphne for a moment: never during a measurement."""
        if self.probe_path is None:
            return None
        asked = time.time()
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                r for r in probe_records(self.probe_path, asked, 2e9) if r["kind"] == "objects"
            ]
            if found:
                return found[-1]
            time.sleep(0.1)
        return None

    def full_collection(self, timeout: float = 20) -> dict | None:
        """With the probe: time one full garbage collection in daphne (SIGUSR2)."""
        if self.probe_path is None:
            return None
        asked = time.time()
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [
                r for r in probe_records(self.probe_path, asked, 2e9) if r["kind"] == "full_gc"
            ]
            if found:
                return found[-1]
            time.sleep(0.1)
        return None


class SocketIOServer(ServerProcess):
    side, label = SOCKETIO, "node"

    def __init__(self, env: dict[str, str], log_path: Path):
        super().__init__(env, log_path)
        # simplejwt signs with JWT_SIGNING_KEY, or SECRET_KEY without one (quickpe.settings).
        key = env.get("JWT_SIGNING_KEY") or env["SECRET_KEY"]
        self.env = ws_socketio.server_env(env, self.port, key)
        self.command = [ws_socketio.node(), str(ws_socketio.SERVER_JS)]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket"

    def shown(self, nofile: int) -> str:
        return (
            show_command(
                ["node", str(ws_socketio.SERVER_JS.relative_to(BASE_DIR))],
                {
                    "SIO_PORT": str(self.port),
                    "SIO_REDIS_URL": "<REDIS_URL>",
                    "SIO_REDIS_KEY": "<unique>",
                    "SIO_JWT_KEY": "<SECRET_KEY>",
                },
            )
            + f" (RLIMIT_NOFILE {nofile})"
        )


class ClientProcesses:
    """``bench.ws_client`` processes, each holding every n-th user's connection."""

    def __init__(self, count: int, url: str, users_json: Path, env: dict[str, str], mode: str):
        self.processes = [
            spawn(
                [PY, "-m", "bench.ws_client", url, str(users_json), str(index), str(count), mode],
                env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for index in range(count)
        ]
        self.shown = show_command(
            ["python", "-m", "bench.ws_client", url, "<users.json>", "<index>", str(count), mode]
        )

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def ask(self, command: dict, per_process: dict | None = None) -> list[dict]:
        """Send ``command`` to every client (they work in parallel), then read each answer."""
        for process in self.processes:
            process.stdin.write(json.dumps({**command, **(per_process or {})}) + "\n")
            process.stdin.flush()
        answers = []
        for process in self.processes:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"client {process.pid} exited (code {process.poll()})")
            answers.append(json.loads(line))
        return answers

    def cpu(self) -> float:
        return sum(proc_cpu_seconds(pid) or 0.0 for pid in self.pids)

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.ask({"cmd": "quit"})
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


# --- Measuring ----------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))], 2)

    return {
        "p50": rank(0.50),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "max": round(ordered[-1], 2),
        "mean": round(sum(ordered) / len(ordered), 2),
        "count": len(ordered),
    }


def stream_positions(bench: Database, user_ids: list[int]) -> dict[int, int]:
    with bench.connect() as connection:
        rows = connection.execute(
            "SELECT user_id, last_seq FROM notifications_eventstream WHERE user_id = ANY(%s)",
            [user_ids],
        ).fetchall()
    found = dict(rows)
    return {user_id: found.get(user_id, 0) for user_id in user_ids}


def compare(before: dict[int, int], after: dict[int, int], received: dict[int, list[int]]):
    """Every id in (before, after] per user against the ids that user's connection got."""
    expected = lost = duplicates = unexpected = out_of_order = 0
    lost_users = []
    for user_id, last in after.items():
        want = set(range(before[user_id] + 1, last + 1))
        got = received.get(user_id, [])
        got_set = set(got)
        expected += len(want)
        missing = want - got_set
        lost += len(missing)
        if missing and len(lost_users) < 10:
            lost_users.append({"user": user_id, "missing": sorted(missing)[:10]})
        duplicates += len(got) - len(got_set)
        unexpected += len(got_set - want)
        out_of_order += sum(1 for a, b in zip(got, got[1:], strict=False) if b <= a)
    stray = sum(len(ids) for user_id, ids in received.items() if user_id not in after)
    return {
        "expected": expected,
        "received": sum(len(ids) for ids in received.values()),
        "lost": lost,
        "duplicates": duplicates,
        "unexpected": unexpected + stray,
        "out_of_order": out_of_order,
        "lost_examples": lost_users,
    }


class Window:
    """CPU seconds of the server, the clients and the whole machine over a stretch of time."""

    def __init__(self, server: ServerProcess, clients: ClientProcesses):
        self.server, self.clients = server, clients
        self.wall_started = time.time()
        self.started = time.monotonic()
        self.server0, self.clients0 = server.cpu(), clients.cpu()
        self.machine0 = machine_jiffies()

    def result(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        busy0, total0 = self.machine0
        busy1, total1 = machine_jiffies()
        server_cpu = self.server.cpu() - self.server0
        clients_cpu = self.clients.cpu() - self.clients0
        machine = (busy1 - busy0) / (total1 - total0) * os.cpu_count() if total1 > total0 else None
        return {
            "wall": [round(self.wall_started, 3), round(time.time(), 3)],
            "elapsed_s": round(elapsed, 3),
            "server_cpu_s": round(server_cpu, 3),
            "server_cores": round(server_cpu / elapsed, 3),
            "clients_cpu_s": round(clients_cpu, 2),
            "clients_cores": round(clients_cpu / elapsed, 2),
            "machine_busy_cores": round(machine, 2) if machine is not None else None,
            # The event source (transfer driver or publisher), PostgreSQL, Redis, and whatever
            # else runs on the machine.
            "rest_cores": round(machine - (server_cpu + clients_cpu) / elapsed, 2)
            if machine is not None
            else None,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }


def probe_records(path: Path | None, start: float, end: float) -> list[dict]:
    if path is None or not path.exists():
        return []
    records = []
    with open(path) as handle:
        for line in handle:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if start <= record["at"] <= end:
                    records.append(record)
    return records


def probe_summary(records: list[dict], samples: list[list[float]] | None = None) -> dict:
    """Stalls of daphne's event loop, GC pauses and sweep times in a window; with ``samples``
    ([receive time, latency ms] per frame), how many frames over 50 ms waited through a stall."""

    def stats(values: list[float]) -> dict:
        if not values:
            return {"count": 0}
        return {
            "count": len(values),
            "mean_ms": round(sum(values) / len(values), 2),
            "max_ms": round(max(values), 2),
            "total_ms": round(sum(values), 1),
        }

    def of(kind: str, **match) -> list[dict]:
        return [
            r for r in records if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())
        ]

    stalls = of("stall")
    summary = {
        "stalls_over_10ms": stats([r["ms"] for r in stalls]),
        "stalls_over_50ms": sum(1 for r in stalls if r["ms"] > 50),
        "gc_gen2": stats([r["ms"] for r in of("gc", generation=2)]),
        "gc_gen01_over_5ms": stats([r["ms"] for r in of("gc") if r["generation"] < 2]),
        "application_checker": stats([r["ms"] for r in of("application_checker")]),
        "timeout_checker": stats([r["ms"] for r in of("timeout_checker")]),
        "gc_gen1_collections": len(of("promoted")),
        "promoted_to_old": sum(r["n"] for r in of("promoted")),
    }
    if samples is not None:
        # A stall record is (start, length); the lag sampler sees it when it ends.
        spans = [(r["at"], r["at"] + r["ms"] / 1000) for r in stalls]
        busy = [
            (r["at"], r["at"] + r["ms"] / 1000, r["kind"]) for r in records if r["kind"] != "stall"
        ]
        slow = [(at - ms / 1000, at) for at, ms in samples if ms > 50]
        summary["slow_frames_over_50ms"] = len(slow)
        summary["slow_frames_during_a_stall"] = sum(
            1 for sent, got in slow if any(a < got and b > sent for a, b in spans)
        )
        causes: dict[str, int] = {}
        for sent, got in slow:
            for a, b, kind in busy:
                if a < got and b > sent and b - a > 0.01:
                    causes[kind] = causes.get(kind, 0) + 1
        summary["slow_frames_overlapping"] = causes
    return summary


# --- One level ----------------------------------------------------------------------------


@dataclass
class Context:
    """What every level of a run shares."""

    settings: Settings
    bench: Database
    env: dict[str, str]
    users: list[dict]
    users_json: Path
    workdir: Path
    recordings: dict[int, ws_socketio.Recording]


@dataclass
class Events:
    """An event phase's outcome: what the source made and which ids each user should have."""

    source: dict  # the driver's or publisher's JSON line
    command: str
    before: dict[int, int]  # per user of the level: ids after this were made in the phase
    after: dict[int, int]  # per user of the level: the last id made in the phase
    planned: dict[int, int]  # per user: how many events the source says it made


def transfers_command(ctx: Context, level: int) -> tuple[list[str], str]:
    settings = ctx.settings
    command = [
        PY,
        "-m",
        "bench.ws_django",
        "transfers",
        str(ctx.users_json),
        str(level),
        f"{settings.rate:g}",
        f"{settings.duration:g}",
    ]
    shown = show_command(
        ["python", *command[1:4], "<users.json>", *command[5:]],
        {"DATABASE_URL": "<quickpe_bench_ws>"},
    )
    return command, shown


def drive_quickpe(ctx: Context, level: int) -> Events:
    """``transfer_create`` at the rate for the duration; the streams' positions around it."""
    level_ids = [user["id"] for user in ctx.users[:level]]
    before = stream_positions(ctx.bench, level_ids)
    command, shown = transfers_command(ctx, level)
    out(f"$ {shown}")
    driver = start_source(command, ctx.env)
    result = finish_source(driver, ctx.settings.duration, "the transfer driver")
    return Events(
        source={k: v for k, v in result.items() if k != "expected_events_by_user"},
        command=shown,
        before=before,
        after=stream_positions(ctx.bench, level_ids),
        planned={int(k): v for k, v in result["expected_events_by_user"].items()},
    )


def drive_socketio(ctx: Context, level: int) -> Events:
    """The level's recorded frames emitted at the same rate by the publisher."""
    settings = ctx.settings
    recording = ctx.recordings[level]
    schedule = ctx.workdir / f"schedule-{level}.json"
    recording.write_schedule(schedule)
    command = ws_socketio.publisher_command(schedule, settings.rate)
    shown = show_command(
        ["node", str(ws_socketio.PUBLISHER_JS.relative_to(BASE_DIR)), "<schedule.json>"]
        + command[3:],
        {"SIO_REDIS_URL": "<REDIS_URL>", "SIO_REDIS_KEY": "<unique>"},
    )
    out(f"$ {shown}")
    beside = None
    if settings.sio_transfers:
        # The same database work on the machine as in QuickPe's phase; its events and
        # doorbells reach no one (no daphne runs now).
        transfers, transfers_shown = transfers_command(ctx, level)
        out(f"$ {transfers_shown}  (beside it: the machine's load of QuickPe's phase)")
        beside = start_source(transfers, ctx.env)
        beside.stdout.readline()  # set up: the publisher starts with its transfers
    env = ws_socketio.server_env(ctx.env, 0, "")
    result = finish_source(start_source(command, env), settings.duration, "the publisher")
    if beside is not None:
        made = finish_source(beside, settings.duration, "the transfer driver")
        result["transfers_beside"] = {
            k: v for k, v in made.items() if k != "expected_events_by_user"
        }
    level_ids = [user["id"] for user in ctx.users[:level]]
    first = recording.before()
    emitted = {int(k): v for k, v in result.pop("emitted_by_user").items()}
    before = {user_id: first.get(user_id, 0) for user_id in level_ids}
    return Events(
        source=result,
        command=shown,
        before=before,
        after={user_id: before[user_id] + emitted.get(user_id, 0) for user_id in level_ids},
        planned={user_id: len(ids) for user_id, ids in recording.events_by_user().items()},
    )


def start_source(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return spawn(command, env, stdout=subprocess.PIPE, text=True)


def finish_source(process: subprocess.Popen, duration: float, name: str) -> dict:
    """The JSON line an event source prints when it is done."""
    try:
        stdout, _ = process.communicate(timeout=duration + 120)
    except subprocess.TimeoutExpired:
        stop(process)
        raise RuntimeError(f"{name} did not finish in time") from None
    if process.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"{name} failed (exit {process.returncode})")
    return json.loads(stdout.strip().splitlines()[-1])


def run_level(
    ctx: Context,
    level: int,
    *,
    server: ServerProcess,
    clients: ClientProcesses,
    baseline_rss: int,
    baseline_objects: dict | None,
) -> dict:
    settings, name = ctx.settings, server.label
    row: dict = {"level": level, "server": server.side}
    out(f"\n--- {level:,} connections: {ws_report.TITLES[server.side]}")
    # Connect (with one server only, the previous level's connections stay open).
    window = Window(server, clients)
    per_client = max(settings.connect_concurrency // settings.client_procs, 1)
    answers = clients.ask({"cmd": "connect", "upto": level, "concurrency": per_client})
    connect = window.result()
    failed: dict[str, int] = {}
    for answer in answers:
        for reason, count in answer["failed"].items():
            failed[reason] = failed.get(reason, 0) + count
    new = sum(answer["new"] for answer in answers)
    held = sum(answer["open"] for answer in answers)
    row["connect"] = {
        **connect,
        "new": new,
        "failed": failed,
        "rate_per_s": round(new / connect["elapsed_s"], 1),
        "server_cpu_ms_per_handshake": round(connect["server_cpu_s"] * 1000 / new, 3)
        if new
        else None,
    }
    out(
        f"  connected {new:,} more in {connect['elapsed_s']:.1f}s "
        f"({row['connect']['rate_per_s']:,.0f}/s, concurrency {settings.connect_concurrency}); "
        f"failed {failed or 0}; {name} {connect['server_cores']} cores "
        f"({row['connect']['server_cpu_ms_per_handshake']} ms CPU per handshake), clients "
        f"{connect['clients_cores']} cores, machine {connect['machine_busy_cores']}"
    )
    objects = server.tracked_objects()
    if objects is not None and baseline_objects is not None:
        row["gc_tracked_objects"] = objects["count"]
        per = (objects["count"] - baseline_objects["count"]) / max(held, 1)
        row["gc_objects_per_connection"] = round(per, 1)
        by_type = {
            name: round((count - baseline_objects["types"].get(name, 0)) / max(held, 1), 2)
            for name, count in objects["types"].items()
        }
        row["gc_objects_per_connection_by_type"] = dict(
            sorted(by_type.items(), key=lambda item: -item[1])[:15]
        )
        out(
            f"  probe: daphne's collector tracks {objects['count']:,} objects ({per:.0f} per "
            f"connection over the baseline; counted in {objects['ms'] / 1000:.1f}s); per "
            "connection: "
            + ", ".join(
                f"{name.rsplit('.', 1)[-1]} {value:g}"
                for name, value in list(row["gc_objects_per_connection_by_type"].items())[:8]
            )
        )
        time.sleep(1)
    # Idle: RSS settles, and what holding N idle connections costs in CPU.
    idle = Window(server, clients)
    time.sleep(3)
    row["idle"] = idle.result()
    if server.probe_path is not None:
        row["idle"]["probe"] = probe_summary(probe_records(server.probe_path, *row["idle"]["wall"]))
    rss = server.rss()
    row["held_before"] = held
    row["server_established"] = server.established()
    row["server_rss_mb"] = round(rss / 2**20, 1)
    row["server_rss_delta_mb"] = round((rss - baseline_rss) / 2**20, 1)
    row["kb_per_connection"] = round((rss - baseline_rss) / 1024 / held, 1) if held else None
    row["server_threads"] = server.threads()
    out(
        f"  held {held:,} ({name} sees {row['server_established']:,} established); {name} RSS "
        f"{row['server_rss_mb']} MB (+{row['server_rss_delta_mb']} MB over the baseline) = "
        f"{row['kb_per_connection']} KB per connection; idle CPU: {name} "
        f"{row['idle']['server_cores']} cores, clients {row['idle']['clients_cores']}"
    )

    # Events for users who hold a connection. They are expected on the connections open when
    # the phase starts (a connection that closes during it loses what it misses); every
    # recipient is among the first N users, so a user whose connect failed is simply not
    # expected to receive anything.
    connected_ids = sorted(
        {user_id for answer in clients.ask({"cmd": "reset"}) for user_id in answer["open_ids"]}
    )
    row["held_at_start"] = len(connected_ids)
    window = Window(server, clients)
    events = (drive_quickpe if server.side == QUICKPE else drive_socketio)(ctx, level)
    row["events_command"] = events.command
    after = {user_id: events.after[user_id] for user_id in connected_ids}
    expected_total = sum(after[u] - events.before[u] for u in connected_ids)
    # Drain: wait until the clients have every frame they should (or time).
    drain_started = time.monotonic()
    while True:
        frames = sum(answer["frames"] for answer in clients.ask({"cmd": "count"}))
        if frames >= expected_total or time.monotonic() - drain_started > settings.drain:
            break
        time.sleep(0.1)
    row["drain_s"] = round(time.monotonic() - drain_started, 2)
    row["event_phase"] = window.result()
    collected = clients.ask({"cmd": "collect"})
    received: dict[int, list[int]] = {}
    samples: list[list[float]] = []
    closed: dict[str, int] = {}
    other: dict[str, int] = {}
    client_gc: list[list[float]] = []
    frame_bytes = 0
    for answer in collected:
        client_gc += answer["gc_gen2"]
        received.update({int(user): ids for user, ids in answer["received"].items()})
        samples += answer["latencies"]
        frame_bytes += answer["frame_bytes"]
        for reason, count in answer["closed"].items():
            closed[reason] = closed.get(reason, 0) + count
        for kind, count in answer["other_frames"].items():
            other[kind] = other.get(kind, 0) + count
    row["held_after"] = sum(answer["open"] for answer in collected)
    row["closed_by_server"] = closed
    row["other_frames"] = other
    row["client_gc_gen2_ms"] = sorted(ms for _at, ms in client_gc)
    row["source"] = events.source
    row["events"] = compare(events.before, after, received)
    row["events"]["frame_bytes_mean"] = round(frame_bytes / len(samples), 1) if samples else None
    # What the source says it made must be what the streams (or the recording) hold.
    level_ids = [user["id"] for user in ctx.users[:level]]
    row["events"]["matches_source"] = all(
        events.after[u] - events.before[u] == events.planned.get(u, 0) for u in level_ids
    )
    row["events"]["for_users_without_a_connection"] = sum(
        events.after[u] - events.before[u] for u in level_ids if u not in after
    )
    if not row["events"]["matches_source"]:
        out(
            "  WARNING: the events made differ from what the source planned (another bench.ws "
            "run writing to the bench database?); these numbers are void"
        )
    row["latency_ms"] = percentiles([ms for _at, ms in samples])
    if server.probe_path is not None:
        start, end = row["event_phase"]["wall"]
        row["probe"] = probe_summary(probe_records(server.probe_path, start - 1, end), samples)
    row["server_rss_after_mb"] = round(server.rss() / 2**20, 1)
    counts, latency, phase = row["events"], row["latency_ms"], row["event_phase"]
    delivered = max(counts["received"], 1)
    # Over the server's idle rate: holding N connections costs CPU with no event at all
    # (daphne's per-second sweeps, keep-alive timers), which is not the events' cost.
    busy = phase["server_cpu_s"] - row["idle"]["server_cores"] * phase["elapsed_s"]
    row["cpu_ms_per_event"] = round(max(busy, 0.0) * 1000 / delivered, 3)
    row["cpu_ms_per_event_with_idle"] = round(phase["server_cpu_s"] * 1000 / delivered, 3)
    row["pass"] = (
        row["held_after"] == level
        and counts["lost"] == 0
        and counts["duplicates"] == 0
        and counts["unexpected"] == 0
        and counts["out_of_order"] == 0
        and latency["p99"] is not None
        and latency["p99"] < TARGET_P99_MS
    )
    source = events.source
    made = (
        f"{source['transfers']} transfers ({source['rate_achieved']}/s, errors "
        f"{source['errors'] or 0}, commit p50 {source['tx_ms']['p50']} ms)"
        if server.side == QUICKPE
        else f"{source['emitted']} frames of {source['transfers']} recorded transfers "
        f"({source['rate_achieved']} transfers/s, publisher {source['cpu_s']} s CPU)"
    )
    out(
        f"  -> {made}; events expected {counts['expected']}, received {counts['received']}, "
        f"lost {counts['lost']}, duplicates {counts['duplicates']}, unexpected "
        f"{counts['unexpected']}, out of order {counts['out_of_order']}"
        + (
            f" (plus {counts['for_users_without_a_connection']} for users without a connection)"
            if counts["for_users_without_a_connection"]
            else ""
        )
        + f"; latency p50 {latency['p50']} / p95 {latency['p95']} / p99 "
        f"{latency['p99']} / max {latency['max']} ms"
    )
    out(
        f"     held after {row['held_after']:,}; closed by server {closed or 0}; {name} "
        f"{phase['server_cores']} cores ({row['cpu_ms_per_event']} ms CPU per event delivered "
        f"over idle, {row['cpu_ms_per_event_with_idle']} with it), clients "
        f"{phase['clients_cores']}, machine {phase['machine_busy_cores']} cores (of which not "
        f"{name} or clients {phase['rest_cores']}; load average {phase['load_avg_1m']}); "
        f"drained in {row['drain_s']} s; RSS after {row['server_rss_after_mb']} MB; "
        f"{counts['frame_bytes_mean']} bytes per event frame; client full GCs "
        f"{row['client_gc_gen2_ms'] or 0}"
    )
    if "probe" in row:
        out("     probe (daphne's event loop): " + ws_report.fmt_probe(row["probe"]))
        out("     probe while idle before:      " + ws_report.fmt_probe(row["idle"]["probe"]))
    return row


# --- One server ---------------------------------------------------------------------------


def start_server(ctx: Context, side: str, tag: str, *, probe: bool) -> ServerProcess:
    if side == QUICKPE:
        return Daphne(
            ctx.env,
            RESULTS_DIR / f"daphne-ws-{tag}.log",
            RESULTS_DIR / f"daphne-ws-{tag}-probe.jsonl" if probe else None,
        )
    return SocketIOServer(ctx.env, RESULTS_DIR / f"socketio-ws-{tag}.log")


def run_server(ctx: Context, side: str, levels: list[int], report: dict, tag: str) -> list[dict]:
    """Start ``side``'s server and clients, measure ``levels`` (ascending, connections kept
    from one to the next), stop both. Levels the time budget does not allow are skipped."""
    settings = ctx.settings

    def fits(level: int, held: int) -> bool:
        rate = report["connect_rate"].get(side, 300.0)  # a cautious guess until measured
        needed = (level - held) / rate + settings.duration + settings.drain / 2 + 8
        if time.monotonic() - report["_started"] + needed <= settings.budget:
            return True
        report["skipped"].append(f"{side} {level}")
        out(f"  skipping {side} at {level:,}: the {settings.budget:.0f}s budget would be passed")
        return False

    if not fits(levels[0], 0):
        return []
    server = start_server(ctx, side, tag, probe=settings.probe and side == QUICKPE)
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    report["commands"][f"{side}_server"] = server.shown(nofile)
    out(f"\n[{ws_report.TITLES[side]}] levels {levels}\n$ {server.shown(nofile)}")
    server.start()
    out(
        f"  {server.label} pid {server.process.pid} on 127.0.0.1:{server.port}, RLIMIT_NOFILE "
        f"{server.nofile()[0]}; log {server.log_path.relative_to(BASE_DIR)}"
    )
    rows = []
    clients = ClientProcesses(settings.client_procs, server.url, ctx.users_json, ctx.env, side)
    try:
        report["commands"][f"{side}_clients"] = clients.shown
        out(f"$ {clients.shown}  (x{settings.client_procs}, pids {clients.pids})")
        warm = clients.ask({"cmd": "warmup", "count": 25})
        if sum(answer["ok"] for answer in warm) == 0:
            raise RuntimeError(f"no warm-up connection succeeded: {warm}")
        time.sleep(1)
        baseline = server.rss()
        baseline_objects = server.tracked_objects()
        out(
            f"  warm-up: {sum(a['ok'] for a in warm)} connections opened and closed; "
            f"{server.label} RSS baseline {baseline / 2**20:.1f} MB"
        )
        held = 0
        for n, level in enumerate(levels):
            if n > 0 and not fits(level, held):
                continue
            row = run_level(
                ctx,
                level,
                server=server,
                clients=clients,
                baseline_rss=baseline,
                baseline_objects=baseline_objects,
            )
            row["baseline_rss_mb"] = round(baseline / 2**20, 1)
            if baseline_objects is not None:
                row["baseline_gc_tracked_objects"] = baseline_objects["count"]
            rows.append(row)
            held = row["held_after"]
            report["connect_rate"][side] = max(row["connect"]["rate_per_s"], 50.0)
            if server.process.poll() is not None:
                out(f"  {server.label} exited (code {server.process.returncode}); stopping")
                break
        # Last, so that it changes nothing measured: what one full collection costs now.
        full = server.full_collection() if server.process.poll() is None else None
        if full is not None and rows:
            rows[-1]["probe_full_gc_at_end_ms"] = round(full["ms"], 1)
            out(f"  probe: a full garbage collection in daphne now takes {full['ms']:.0f} ms")
    finally:
        clients.quit()
        server.stop()
    return rows


# --- Replay while away --------------------------------------------------------------------


def away_check(ctx: Context, side: str, tag: str) -> dict:
    """Two users connect and leave; one transfer's events are sent while they are away; they
    reconnect (QuickPe: resuming after the last id their hello gave) and what reaches them
    within BENCH_WS_AWAY_WAIT seconds [3] is counted."""
    wait = float(os.environ.get("BENCH_WS_AWAY_WAIT", "3"))
    by_id = {user["id"]: user for user in ctx.users}
    if side == QUICKPE:
        pair = ctx.users[:2]  # the driver's users with CONNECTED=2
    else:
        transfer = ctx.recordings[min(ctx.recordings)].transfers[0]
        pair = [by_id[user_id] for user_id in dict.fromkeys(uid for uid, _f in transfer)]
    server = start_server(ctx, side, f"{tag}-away", probe=False)
    server.start()
    try:
        hellos = asyncio.run(_visit(server.url, side, pair))
        if side == QUICKPE:
            command = [PY, "-m", "bench.ws_django", "transfers", str(ctx.users_json), "2", "1", "1"]
            made = finish_source(start_source(command, ctx.env), 1, "the transfer")
            sent = sum(made["expected_events_by_user"].values())
        else:
            schedule = ctx.workdir / "schedule-away.json"
            ctx.recordings[min(ctx.recordings)].write_schedule(schedule, [transfer])
            env = ws_socketio.server_env(ctx.env, 0, "")
            publisher = start_source(ws_socketio.publisher_command(schedule, 1), env)
            sent = finish_source(publisher, 1, "the publisher")["emitted"]
        received = asyncio.run(_return(server.url, side, pair, hellos, wait))
    finally:
        server.stop()
    result = {
        "users": len(pair),
        "sent_while_away": sent,
        "received_after_reconnect": received,
        "how": "resume from the hello's last_event_id"
        if side == QUICKPE
        else "plain reconnect (the Redis adapter keeps nothing)",
    }
    out(
        f"  {ws_report.TITLES[side]}: {sent} events sent to {len(pair)} users while away, "
        f"{received} received after they reconnected ({result['how']})"
    )
    return result


async def _visit(url: str, side: str, pair: list[dict]) -> list[dict]:
    hellos = []
    for user in pair:
        ws, hello = await open_stream(url, side, user["token"])
        hellos.append(hello)
        await ws.close()
    return hellos


async def _return(url: str, side: str, pair: list[dict], hellos: list[dict], wait: float) -> int:
    """Reconnect each user and count the events that arrive within ``wait`` seconds (QuickPe
    ends its replay with ``resumed``)."""
    received = 0
    for user, hello in zip(pair, hellos, strict=True):
        query = f"&last_event_id={hello['last_event_id']}" if side == QUICKPE else ""
        ws, _hello = await open_stream(url, side, user["token"], query)
        deadline = time.monotonic() + wait
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    frame, raw = await asyncio.wait_for(next_event(ws, side), left)
                except TimeoutError:
                    break
                if frame is not None:
                    received += 1
                elif side == QUICKPE and json.loads(raw).get("type") == "resumed":
                    break
        finally:
            await ws.close()
    return received


# --- Main ---------------------------------------------------------------------------------


def record_levels(ctx: Context) -> None:
    """For the reference: each level's transfers made once in QuickPe, their frames kept."""
    settings = ctx.settings
    count = int(settings.rate * settings.duration)
    for level in settings.levels:
        path = ctx.workdir / f"recording-{level}.json"
        command = ws_socketio.record_command(PY, ctx.users_json, level, count, path)
        began = time.monotonic()
        subprocess.run(command, cwd=BASE_DIR, env=ctx.env, check=True, timeout=600)
        ctx.recordings[level] = recording = ws_socketio.Recording(path)
        events = sum(len(transfer) for transfer in recording.transfers)
        out(
            f"  level {level:,}: {len(recording.transfers)} transfers, {events} frames "
            f"({recording.frame_bytes()} bytes each on average) in "
            f"{time.monotonic() - began:.1f}s"
        )


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    settings = Settings.from_env()
    started = time.monotonic()
    development, bench = bench_database(settings.database)
    if settings.database in (development, "quickpe"):
        raise SystemExit(f"refusing to benchmark in the development database {development!r}")
    # Two runs at once would drop each other's database (and share two CPUs): one at a time.
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    lock = open(RESULTS_DIR / f".{settings.database}.lock", "w")  # noqa: SIM115 - held to exit
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench.ws run uses {settings.database!r}; try later") from None
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    nofile = raise_nofile(settings.users + FD_HEADROOM)
    servers = list(settings.servers)
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "settings": asdict(settings),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
            "memory_mb": psutil.virtual_memory().total // 2**20,
        },
        "levels": [],
        "skipped": [],
        "commands": {},
        "connect_rate": {},
        "_started": started,
    }
    out(
        f"\nQuickPe WebSocket bench: levels {settings.levels}, servers {servers}, "
        f"{settings.rate:g} transfers/s for {settings.duration:g}s per level, "
        f"{settings.client_procs} client processes; {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; RLIMIT_NOFILE {nofile}"
    )
    if nofile < settings.users + 1024:
        out(f"  warning: only {nofile} file descriptors; the top level may fail to connect")
    if SOCKETIO in servers and (reason := ws_socketio.unavailable()) is not None:
        servers.remove(SOCKETIO)
        report["socketio_skipped"] = reason
        out(f"  Socket.IO reference SKIPPED: {reason}. QuickPe's own numbers still follow.")
    if not servers:
        out("  nothing to measure")
        return 1

    # A key of our own: the servers must verify the tokens the set-up mints.
    env = {
        **os.environ,
        "DATABASE_URL": bench.url,
        **LIMITS_ENV,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "QUICKPE_REDIS_PREFIX": f"quickpe-bench-ws-{tag}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("JWT_SIGNING_KEY", None)  # the tokens are signed with the SECRET_KEY above
    with tempfile.TemporaryDirectory(prefix="quickpe-bench-ws-") as temp:
        users_json = Path(temp) / "users.json"

        # 1. Database and users.
        out(f"\n[1/3] Fresh database {bench.name!r} (the {development!r} database is untouched)")
        recreate_database(bench, development)
        migrate = [PY, "manage.py", "migrate", "--no-input", "-v", "0"]
        out(f"$ {show_command(['python', *migrate[1:]], {'DATABASE_URL': '<quickpe_bench_ws>'})}")
        subprocess.run(migrate, cwd=BASE_DIR, env=env, check=True, timeout=180)
        setup = [
            PY,
            "-m",
            "bench.ws_django",
            "setup",
            str(users_json),
            str(settings.users),
            str(settings.senders_used),
        ]
        report["commands"]["setup"] = show_command(
            ["python", *setup[1:4], "<users.json>", *setup[5:]],
            {"DATABASE_URL": "<quickpe_bench_ws>"},
        )
        out(f"$ {report['commands']['setup']}")
        subprocess.run(setup, cwd=BASE_DIR, env=env, check=True, timeout=300)
        data = json.loads(users_json.read_text())
        users_json.chmod(0o600)
        users = data["users"]
        out(
            f"  -> {len(users):,} users, the first {data['senders']} funded with "
            f"{data['funds_paise'] / 100:,.2f} INR; access tokens (AccessToken.for_user, "
            f"{data['token_lifetime_s'] / 60:.0f} min) in {data['token_seconds']}s; "
            f"{data['seconds']}s in all"
        )
        ctx = Context(settings, bench, env, users, users_json, Path(temp), {})
        if SOCKETIO in servers:
            report["commands"]["record"] = show_command(
                ["python", "-m", "bench.ws_django", "record", "<users.json>", "<N>"]
                + [str(int(settings.rate * settings.duration)), "<recording.json>"],
                {"DATABASE_URL": "<quickpe_bench_ws>"},
            )
            out(
                "  the reference's events: each level's transfers made once, their frames "
                f"kept\n$ {report['commands']['record']}"
            )
            record_levels(ctx)

        # 2. The servers, level by level. Two servers: each started afresh for every level,
        # in alternating order; one: started once, connections kept from level to level.
        out(f"\n[2/3] Levels {settings.levels}: {', '.join(servers)}")
        if len(servers) > 1:
            rounds = [
                (level, servers if n % 2 == 0 else servers[::-1])
                for n, level in enumerate(settings.levels)
            ]
            for level, order in rounds:
                for side in order:
                    report["levels"] += run_server(ctx, side, [level], report, f"{tag}-{level}")
        else:
            report["levels"] += run_server(ctx, servers[0], settings.levels, report, tag)

        # 3. Replay while away.
        if settings.away:
            out("\n[3/3] Replay while away")
            report["away"] = {side: away_check(ctx, side, tag) for side in servers}
        report["commands"]["transfers"] = show_command(
            ["python", "-m", "bench.ws_django", "transfers", "<users.json>", "<N>"]
            + [f"{settings.rate:g}", f"{settings.duration:g}"],
            {"DATABASE_URL": "<quickpe_bench_ws>"},
        )
        if SOCKETIO in servers:
            report["commands"]["publisher"] = show_command(
                ["node", "bench/socketio/publisher.js", "<schedule.json>", f"{settings.rate:g}"],
                {"SIO_REDIS_URL": "<REDIS_URL>", "SIO_REDIS_KEY": "<unique>"},
            )

    report.pop("_started")
    report["target"] = ws_report.target_verdict(report)
    report["comparison"] = ws_report.comparison(report)
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    report["load_avg_at_end"] = os.getloadavg()
    results_file = RESULTS_DIR / f"ws-{tag}.json"
    report["results_file"] = str(results_file.relative_to(BASE_DIR))
    results_file.write_text(json.dumps(report, indent=2, default=str))
    (RESULTS_DIR / "ws-latest.json").write_text(json.dumps(report, indent=2, default=str))
    out(ws_report.summary(report))
    out(f"(WebSocket bench: {report['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    from bench import lifecycle

    lifecycle.run(main, stop_all=stop_all, out=out, stopping="stopping the servers and clients")
