"""``make bench``, WebSocket part: how many event-stream connections one daphne process holds,
what each costs in memory, and how fast events get from a commit to the client.

Runs under ``quickpe.embedded run`` (DATABASE_URL/REDIS_URL set), after ``bench.run``:

1. A fresh database ``quickpe_bench_ws`` on the same server (``quickpe`` is never touched),
   migrated, with max(BENCH_WS_LEVELS) users: the first BENCH_WS_SENDERS signed up and funded
   through the services, the rest bulk-inserted; an access token per user (``bench.ws_django``).
2. ONE daphne process on a free 127.0.0.1 port with the options ``make run`` gives it
   (``quickpe.daphne_tuning``), its file-descriptor limit raised, on that database, the same
   Redis and a Redis prefix of its own.
3. BENCH_WS_CLIENT_PROCS client processes (``bench.ws_client``) sharing the users: a warm-up
   (a few connections opened and closed), then daphne's RSS as the baseline.
4. For each level N (ascending; the connections of a level stay open for the next): connect
   until N users hold one authenticated connection each (BENCH_WS_CONNECT_CONCURRENCY at a
   time), note daphne's RSS and idle CPU, then run ``transfer_create`` from another process
   (``bench.ws_django transfers``) at BENCH_WS_RATE per second for BENCH_WS_DURATION seconds
   between users who hold connections. Every event id each user should get, taken from the
   database (``notifications_eventstream.last_seq`` before and after), is compared with the ids
   the clients received: lost, duplicated, unexpected, out of order. Latency = receive time -
   the frame's ``ts`` (the event's ``created_at``, set just before commit; same clock).
5. A table with the commands, PASS/FAIL against the target (10,000 connections on one process,
   p99 delivery < 100 ms, nothing lost) and everything as JSON in bench/results/ws-*.json.

Knobs (defaults in brackets): BENCH_WS_LEVELS [1000,5000,10000], BENCH_WS_DURATION [15] seconds
of transfers per level, BENCH_WS_RATE [30] transfers/s, BENCH_WS_SENDERS [200],
BENCH_WS_CLIENT_PROCS [2], BENCH_WS_CONNECT_CONCURRENCY [200], BENCH_WS_DRAIN [10] seconds to
wait for the last frames, BENCH_WS_BUDGET [300] seconds, BENCH_WS_DATABASE [quickpe_bench_ws],
BENCH_WS_PROBE [0]: 1 runs daphne through ``bench.ws_daphne`` (the same daphne, plus an
event-loop lag sampler, GC pause log and timers on daphne's per-second sweeps over every
connection) and reports, per level, the stalls, how many slow frames they explain and the
objects young collections promoted, and at the end what one full collection costs;
BENCH_WS_GC_FREEZE_EVERY [unset]: an experiment (implies the probe) that calls gc.freeze() in
daphne every so many seconds.
"""

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
    table,
)
from quickpe.daphne_tuning import DAPHNE_OPTIONS

TARGET_CONNECTIONS = 10_000
TARGET_P99_MS = 100.0
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

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        levels = sorted({int(v) for v in env.get("BENCH_WS_LEVELS", "1000,5000,10000").split(",")})
        settings = cls(
            levels=levels,
            duration=float(env.get("BENCH_WS_DURATION", "15")),
            rate=float(env.get("BENCH_WS_RATE", "30")),
            senders=int(env.get("BENCH_WS_SENDERS", "200")),
            client_procs=int(env.get("BENCH_WS_CLIENT_PROCS", "2")),
            connect_concurrency=int(env.get("BENCH_WS_CONNECT_CONCURRENCY", "200")),
            drain=float(env.get("BENCH_WS_DRAIN", "10")),
            budget=float(env.get("BENCH_WS_BUDGET", "300")),
            database=env.get("BENCH_WS_DATABASE", "quickpe_bench_ws"),
            probe=env.get("BENCH_WS_PROBE", "0").lower() in ("1", "true", "yes")
            or bool(env.get("BENCH_WS_GC_FREEZE_EVERY")),
        )
        if not levels or levels[0] < 2:
            raise SystemExit("BENCH_WS_LEVELS: each level needs at least 2 connections")
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


class Daphne:
    def __init__(self, env: dict[str, str], log_path: Path, probe_path: Path | None = None):
        self.env, self.log_path, self.probe_path = env, log_path, probe_path
        if probe_path is not None:
            self.env = {**env, "BENCH_WS_PROBE_FILE": str(probe_path)}
        self.port = free_port()
        while self.port == 8001:
            self.port = free_port()
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
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/events/"

    def start(self, timeout: float = 60) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = spawn(self.command, self.env, stdout=self.log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early; see {self.log_path}")
            if self.listening():
                return
            time.sleep(0.2)
        raise RuntimeError(f"daphne did not listen within {timeout}s; see {self.log_path}")

    def listening(self) -> bool:
        import socket

        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def cpu(self) -> float:
        return proc_cpu_seconds(self.process.pid) or 0.0

    def established(self) -> int:
        """Server side: TCP connections of daphne's listening port that are ESTABLISHED."""
        return sum(
            1
            for conn in self.ps.net_connections(kind="tcp")
            if conn.status == psutil.CONN_ESTABLISHED and conn.laddr.port == self.port
        )

    def nofile(self) -> tuple[int, int]:
        return self.ps.rlimit(psutil.RLIMIT_NOFILE)

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

    def threads(self) -> int:
        return self.ps.num_threads()

    def stop(self) -> None:
        stop(self.process)
        if self.process is not None:
            self.log.close()


class ClientProcesses:
    """``bench.ws_client`` processes, each holding every n-th user's connection."""

    def __init__(self, count: int, url: str, users_json: Path, env: dict[str, str]):
        self.processes = [
            spawn(
                [PY, "-m", "bench.ws_client", url, str(users_json), str(index), str(count)],
                env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for index in range(count)
        ]
        self.shown = show_command(
            ["python", "-m", "bench.ws_client", url, "<users.json>", "<index>", str(count)]
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
    """CPU seconds of daphne, the clients and the whole machine over a stretch of time."""

    def __init__(self, daphne: Daphne, clients: ClientProcesses):
        self.daphne, self.clients = daphne, clients
        self.wall_started = time.time()
        self.started = time.monotonic()
        self.daphne0, self.clients0 = daphne.cpu(), clients.cpu()
        self.machine0 = machine_jiffies()

    def result(self) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        busy0, total0 = self.machine0
        busy1, total1 = machine_jiffies()
        daphne_cpu = self.daphne.cpu() - self.daphne0
        clients_cpu = self.clients.cpu() - self.clients0
        machine = (busy1 - busy0) / (total1 - total0) * os.cpu_count() if total1 > total0 else None
        return {
            "wall": [round(self.wall_started, 3), round(time.time(), 3)],
            "elapsed_s": round(elapsed, 2),
            "daphne_cpu_s": round(daphne_cpu, 2),
            "daphne_cores": round(daphne_cpu / elapsed, 2),
            "clients_cpu_s": round(clients_cpu, 2),
            "clients_cores": round(clients_cpu / elapsed, 2),
            "machine_busy_cores": round(machine, 2) if machine is not None else None,
            # The transfer driver, PostgreSQL, Redis, and whatever else runs on the machine.
            "rest_cores": round(machine - (daphne_cpu + clients_cpu) / elapsed, 2)
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


def run_level(
    settings: Settings,
    level: int,
    *,
    daphne: Daphne,
    clients: ClientProcesses,
    bench: Database,
    env: dict[str, str],
    users: list[dict],
    users_json: Path,
    baseline_rss: int,
    baseline_objects: dict | None,
) -> dict:
    row: dict = {"level": level}
    out(f"\n--- {level:,} connections")
    # Connect (the previous level's connections stay open).
    window = Window(daphne, clients)
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
    }
    out(
        f"  connected {new:,} more in {connect['elapsed_s']:.1f}s "
        f"({row['connect']['rate_per_s']:,.0f}/s, concurrency {settings.connect_concurrency}); "
        f"failed {failed or 0}; daphne {connect['daphne_cores']} cores, clients "
        f"{connect['clients_cores']} cores, machine {connect['machine_busy_cores']}"
    )
    objects = daphne.tracked_objects()
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
    idle = Window(daphne, clients)
    time.sleep(3)
    row["idle"] = idle.result()
    if daphne.probe_path is not None:
        row["idle"]["probe"] = probe_summary(probe_records(daphne.probe_path, *row["idle"]["wall"]))
    rss = daphne.rss()
    row["held_before"] = held
    row["server_established"] = daphne.established()
    row["daphne_rss_mb"] = round(rss / 2**20, 1)
    row["daphne_rss_delta_mb"] = round((rss - baseline_rss) / 2**20, 1)
    row["kb_per_connection"] = round((rss - baseline_rss) / 1024 / held, 1) if held else None
    row["daphne_threads"] = daphne.threads()
    out(
        f"  held {held:,} (daphne sees {row['server_established']:,} established); daphne RSS "
        f"{row['daphne_rss_mb']} MB (+{row['daphne_rss_delta_mb']} MB over the baseline) = "
        f"{row['kb_per_connection']} KB per connection; idle CPU: daphne "
        f"{row['idle']['daphne_cores']} cores, clients {row['idle']['clients_cores']}"
    )

    # Transfers among users who hold a connection.
    # Events are expected on the connections open when the transfers start (a connection that
    # closes during the phase loses what it misses); the driver's recipients are all first-N
    # users, so a user whose connect failed is simply not expected to receive anything.
    level_ids = [user["id"] for user in users[:level]]
    connected_ids = sorted(
        {user_id for answer in clients.ask({"cmd": "reset"}) for user_id in answer["open_ids"]}
    )
    row["held_at_start"] = len(connected_ids)
    before = stream_positions(bench, level_ids)
    command = [
        PY,
        "-m",
        "bench.ws_django",
        "transfers",
        str(users_json),
        str(level),
        f"{settings.rate:g}",
        f"{settings.duration:g}",
    ]
    row["transfers_command"] = show_command(
        ["python", *command[1:4], "<users.json>", *command[5:]],
        {"DATABASE_URL": "<quickpe_bench_ws>"},
    )
    out(f"$ {row['transfers_command']}")
    window = Window(daphne, clients)
    driver = spawn(command, env, stdout=subprocess.PIPE, text=True)
    try:
        stdout, _ = driver.communicate(timeout=settings.duration + 120)
    except subprocess.TimeoutExpired:
        stop(driver)
        raise RuntimeError("the transfer driver did not finish in time") from None
    if driver.returncode != 0 or not stdout.strip():
        raise RuntimeError(f"the transfer driver failed (exit {driver.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    everyone = stream_positions(bench, level_ids)
    after = {user_id: everyone[user_id] for user_id in connected_ids}
    expected_total = sum(after[u] - before[u] for u in connected_ids)
    # Drain: wait until the clients have every frame the database says they should (or time).
    drain_started = time.monotonic()
    while True:
        frames = sum(answer["frames"] for answer in clients.ask({"cmd": "count"}))
        if frames >= expected_total or time.monotonic() - drain_started > settings.drain:
            break
        time.sleep(0.1)
    row["drain_s"] = round(time.monotonic() - drain_started, 2)
    row["transfer_phase"] = window.result()
    collected = clients.ask({"cmd": "collect"})
    received: dict[int, list[int]] = {}
    samples: list[list[float]] = []
    closed: dict[str, int] = {}
    other: dict[str, int] = {}
    client_gc: list[list[float]] = []
    for answer in collected:
        client_gc += answer["gc_gen2"]
        received.update({int(user): ids for user, ids in answer["received"].items()})
        samples += answer["latencies"]
        for reason, count in answer["closed"].items():
            closed[reason] = closed.get(reason, 0) + count
        for kind, count in answer["other_frames"].items():
            other[kind] = other.get(kind, 0) + count
    row["held_after"] = sum(answer["open"] for answer in collected)
    row["closed_by_server"] = closed
    row["other_frames"] = other
    row["client_gc_gen2_ms"] = sorted(ms for _at, ms in client_gc)
    row["driver"] = {k: v for k, v in result.items() if k != "expected_events_by_user"}
    row["events"] = compare(before, after, received)
    # What the driver says it caused must be what the database holds.
    by_user = {int(k): v for k, v in result["expected_events_by_user"].items()}
    row["events"]["matches_driver"] = all(
        everyone[u] - before[u] == by_user.get(u, 0) for u in level_ids
    )
    row["events"]["for_users_without_a_connection"] = sum(
        everyone[u] - before[u] for u in level_ids if u not in after
    )
    row["events"]["expected_from_transfers"] = 7 * result["transfers"]
    if not row["events"]["matches_driver"]:
        out(
            "  WARNING: the event streams grew by more than this level's transfers: something "
            "else writes to the bench database (another bench.ws run?); these numbers are void"
        )
    row["latency_ms"] = percentiles([ms for _at, ms in samples])
    if daphne.probe_path is not None:
        start, end = row["transfer_phase"]["wall"]
        row["probe"] = probe_summary(probe_records(daphne.probe_path, start - 1, end), samples)
    row["daphne_rss_after_mb"] = round(daphne.rss() / 2**20, 1)
    events, latency, phase = row["events"], row["latency_ms"], row["transfer_phase"]
    delivered = max(events["received"], 1)
    row["daphne_cpu_ms_per_event"] = round(phase["daphne_cpu_s"] * 1000 / delivered, 3)
    row["pass"] = (
        row["held_after"] == level
        and events["lost"] == 0
        and events["duplicates"] == 0
        and events["unexpected"] == 0
        and events["out_of_order"] == 0
        and latency["p99"] is not None
        and latency["p99"] < TARGET_P99_MS
    )
    out(
        f"  -> {result['transfers']} transfers ({result['rate_achieved']}/s, errors "
        f"{result['errors'] or 0}, commit p50 {result['tx_ms']['p50']} ms); events expected "
        f"{events['expected']}, received {events['received']}, lost {events['lost']}, duplicates "
        f"{events['duplicates']}, unexpected {events['unexpected']}, out of order "
        f"{events['out_of_order']}"
        + (
            f" (plus {events['for_users_without_a_connection']} for users without a connection)"
            if events["for_users_without_a_connection"]
            else ""
        )
        + f"; latency p50 {latency['p50']} / p95 {latency['p95']} / p99 "
        f"{latency['p99']} / max {latency['max']} ms"
    )
    out(
        f"     held after {row['held_after']:,}; closed by server {closed or 0}; daphne "
        f"{phase['daphne_cores']} cores ({row['daphne_cpu_ms_per_event']} ms CPU per event "
        f"delivered), clients {phase['clients_cores']}, driver {result['cpu_s']} s CPU, machine "
        f"{phase['machine_busy_cores']} cores (of which not daphne or clients "
        f"{phase['rest_cores']}; load average {phase['load_avg_1m']}); drained in "
        f"{row['drain_s']} s; RSS after "
        f"{row['daphne_rss_after_mb']} MB; client full GCs {row['client_gc_gen2_ms'] or 0}"
    )
    if "probe" in row:
        out("     probe (daphne's event loop): " + fmt_probe(row["probe"]))
        out("     probe while idle before:      " + fmt_probe(row["idle"]["probe"]))
    return row


def fmt_probe(probe: dict) -> str:
    def part(name: str, stats: dict) -> str:
        if not stats["count"]:
            return f"{name} 0"
        return f"{name} {stats['count']}x mean {stats['mean_ms']} / max {stats['max_ms']} ms"

    text = ", ".join(
        [
            part("stalls>10ms", probe["stalls_over_10ms"]),
            f"stalls>50ms {probe['stalls_over_50ms']}",
            part("gen2 GC", probe["gc_gen2"]),
            part("gen0/1 GC>5ms", probe["gc_gen01_over_5ms"]),
            part("application_checker", probe["application_checker"]),
            part("timeout_checker", probe["timeout_checker"]),
            f"objects moved to the old generation {probe['promoted_to_old']:,} (in "
            f"{probe['gc_gen1_collections']} generation-1 collections)",
        ]
    )
    if "slow_frames_over_50ms" in probe:
        text += (
            f"; frames > 50 ms: {probe['slow_frames_over_50ms']}, of which "
            f"{probe['slow_frames_during_a_stall']} waited through a stall (overlapping: "
            f"{probe['slow_frames_overlapping'] or '-'})"
        )
    return text


# --- Report -------------------------------------------------------------------------------


def summary(report: dict) -> str:
    lines = ["", "=" * 100, "SUMMARY  WebSocket event stream: one daphne process", ""]
    for name, command in report["commands"].items():
        lines.append(f"{name}: {command}")
    lines.append("")

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = []
    for row in report["levels"]:
        events, latency = row["events"], row["latency_ms"]
        rows.append(
            [
                f"{row['level']:,}",
                f"{row['held_after']:,}",
                f"{row['daphne_rss_mb']:.0f}",
                fmt(row["kb_per_connection"]),
                f"{row['connect']['rate_per_s']:.0f}",
                str(row["driver"]["transfers"]),
                str(events["expected"]),
                str(events["received"]),
                str(events["lost"]),
                fmt(latency["p50"]),
                fmt(latency["p95"]),
                fmt(latency["p99"]),
                fmt(latency["max"]),
                f"{row['transfer_phase']['daphne_cores']:.2f}",
                f"{row['transfer_phase']['clients_cores']:.2f}",
                "PASS" if row["pass"] else "FAIL",
            ]
        )
    lines.append(
        table(
            [
                "N",
                "held",
                "RSS MB",
                "KB/conn",
                "conn/s",
                "transfers",
                "expected",
                "received",
                "lost",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
                "daphne cores",
                "client cores",
                "result",
            ],
            rows,
        )
    )
    lines.append("")
    target = report["target"]
    lines.append(
        f"Target {TARGET_CONNECTIONS:,} connections on one daphne process, p99 delivery < "
        f"{TARGET_P99_MS:.0f} ms, 0 lost: {target['verdict']} ({target['detail']})"
    )
    lines.append(
        "RSS MB: daphne's resident memory with N connections held; KB/conn: (RSS - RSS after "
        f"warm-up, {report['baseline_rss_mb']} MB) / N. Latency: client receive time - event ts "
        "(created_at, just before commit). cores: CPU seconds / wall seconds in the transfer phase."
    )
    for row in report["levels"]:
        if "probe" in row:
            lines.append(f"probe at {row['level']:,}: {fmt_probe(row['probe'])}")
    slow = [row for row in report["levels"] if (row["latency_ms"]["p99"] or 0) >= TARGET_P99_MS]
    if slow and not any("probe" in row for row in report["levels"]):
        lines.append(
            "p99 over the target: BENCH_WS_PROBE=1 shows what stalled daphne's event loop "
            "(full GC, its per-connection sweeps) and which slow frames waited through it."
        )
    if report.get("skipped"):
        lines.append(f"Skipped (time budget): {', '.join(map(str, report['skipped']))}")
    lines.append(f"Results: {report.get('results_file', '-')}")
    lines.append("=" * 100)
    return "\n".join(lines)


def target_verdict(report: dict) -> dict:
    row = next((r for r in report["levels"] if r["level"] == TARGET_CONNECTIONS), None)
    if row is None:
        return {"verdict": "NOT RUN", "detail": f"no level of {TARGET_CONNECTIONS:,} measured"}
    return {
        "verdict": "PASS" if row["pass"] else "FAIL",
        "detail": (
            f"held {row['held_after']:,}, p99 {row['latency_ms']['p99']} ms, lost "
            f"{row['events']['lost']}, duplicates {row['events']['duplicates']}, out of order "
            f"{row['events']['out_of_order']}"
        ),
    }


# --- Main ---------------------------------------------------------------------------------


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
    }
    out(
        f"\nQuickPe WebSocket bench: levels {settings.levels}, {settings.rate:g} transfers/s for "
        f"{settings.duration:g}s per level, {settings.client_procs} client processes; "
        f"{os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}; RLIMIT_NOFILE {nofile}"
    )
    if nofile < settings.users + 1024:
        out(f"  warning: only {nofile} file descriptors; the top level may fail to connect")

    # A key of our own: daphne must verify the tokens the set-up mints.
    env = {
        **os.environ,
        "DATABASE_URL": bench.url,
        **LIMITS_ENV,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "QUICKPE_REDIS_PREFIX": f"quickpe-bench-ws-{tag}",
        "PYTHONUNBUFFERED": "1",
    }
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

        # 2. daphne and the clients.
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        daphne = Daphne(
            env,
            RESULTS_DIR / f"daphne-ws-{tag}.log",
            RESULTS_DIR / f"daphne-ws-{tag}-probe.jsonl" if settings.probe else None,
        )
        report["commands"]["daphne"] = (
            show_command(
                ["python", *daphne.command[1:]],
                {"DATABASE_URL": "<quickpe_bench_ws>", "QUICKPE_REDIS_PREFIX": "<unique>"},
            )
            + f" (RLIMIT_NOFILE {nofile})"
        )
        out(f"\n[2/3] One daphne process\n$ {report['commands']['daphne']}")
        daphne.start()
        out(
            f"  daphne pid {daphne.process.pid} on 127.0.0.1:{daphne.port}, RLIMIT_NOFILE "
            f"{daphne.nofile()[0]}; log {daphne.log_path.relative_to(BASE_DIR)}"
        )
        clients = ClientProcesses(settings.client_procs, daphne.url, users_json, env)
        report["commands"]["clients"] = clients.shown
        out(f"$ {clients.shown}  (x{settings.client_procs}, pids {clients.pids})")
        warm = clients.ask({"cmd": "warmup", "count": 25})
        if sum(answer["ok"] for answer in warm) == 0:
            raise RuntimeError(f"no warm-up connection succeeded: {warm}")
        time.sleep(1)
        baseline = daphne.rss()
        report["baseline_rss_mb"] = round(baseline / 2**20, 1)
        baseline_objects = daphne.tracked_objects()
        if baseline_objects is not None:
            report["baseline_gc_tracked_objects"] = baseline_objects["count"]
        out(
            f"  warm-up: {sum(a['ok'] for a in warm)} connections opened and closed; daphne RSS "
            f"baseline {report['baseline_rss_mb']} MB"
        )

        # 3. Levels.
        out(f"\n[3/3] Levels {settings.levels}")
        connect_rate = 300.0  # a cautious guess until the first level measures it
        held = 0
        for level in settings.levels:
            needed = (level - held) / connect_rate + settings.duration + settings.drain / 2 + 8
            if time.monotonic() - started + needed > settings.budget:
                report["skipped"].append(level)
                out(f"  skipping {level:,}: the {settings.budget:.0f}s budget would be passed")
                continue
            row = run_level(
                settings,
                level,
                daphne=daphne,
                clients=clients,
                bench=bench,
                env=env,
                users=users,
                users_json=users_json,
                baseline_rss=baseline,
                baseline_objects=baseline_objects,
            )
            report["levels"].append(row)
            held = row["held_after"]
            connect_rate = max(row["connect"]["rate_per_s"], 50.0)
            if daphne.process.poll() is not None:
                out(f"  daphne exited (code {daphne.process.returncode}); stopping")
                break
        # Last, so that it changes nothing measured: what one full collection costs now.
        full = daphne.full_collection() if daphne.process.poll() is None else None
        if full is not None:
            report["probe_full_gc_at_end_ms"] = round(full["ms"], 1)
            out(f"  probe: a full garbage collection in daphne now takes {full['ms']:.0f} ms")
        clients.quit()
        daphne.stop()
        report["commands"]["transfers"] = show_command(
            ["python", "-m", "bench.ws_django", "transfers", "<users.json>", "<N>"]
            + [f"{settings.rate:g}", f"{settings.duration:g}"],
            {"DATABASE_URL": "<quickpe_bench_ws>"},
        )

    report["target"] = target_verdict(report)
    report["finished_at"] = datetime.now(UTC).isoformat()
    report["elapsed_s"] = round(time.monotonic() - started, 1)
    results_file = RESULTS_DIR / f"ws-{tag}.json"
    report["results_file"] = str(results_file.relative_to(BASE_DIR))
    results_file.write_text(json.dumps(report, indent=2, default=str))
    (RESULTS_DIR / "ws-latest.json").write_text(json.dumps(report, indent=2, default=str))
    out(summary(report))
    out(f"(WebSocket bench: {report['elapsed_s']}s)")
    return 0


if __name__ == "__main__":
    from bench import lifecycle

    lifecycle.run(main, stop_all=stop_all, out=out, stopping="stopping daphne and the clients")
