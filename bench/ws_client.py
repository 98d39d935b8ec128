"""A WebSocket client process for ``bench.ws``: holds its share of the users' connections.

    python -m bench.ws_client URL USERS.json INDEX PROCESSES

Holds one connection per user whose position in USERS.json is INDEX modulo PROCESSES, with
``websockets`` on asyncio, and reads every frame as it arrives: for each event frame the
receive time (``time.time()``, this machine's clock, the one the server's ``ts`` comes from)
minus ``ts`` is the delivery latency. Driven by ``bench.ws`` through JSON lines on stdin, one
JSON line answered on stdout per command:

    {"cmd": "warmup", "count": K}         open K connections, read hello, close them
    {"cmd": "connect", "upto": N, "concurrency": C}
                                          connect every own user among the first N
    {"cmd": "reset"}                      start a measurement phase (forget frames so far);
                                          answers the users whose connection is open
    {"cmd": "count"}                      event frames received in this phase
    {"cmd": "collect"}                    the phase's ids per user, (receive time, latency ms)
    {"cmd": "quit"}

Only 127.0.0.1 is ever contacted (the URL comes from ``bench.ws``). The clients are the
measuring instrument, so their own pauses must not count as delivery time: after each connect
their objects are frozen out of the cycle collector (``gc.freeze()``), and any full collection
that still happens is timed and reported with the frames.
"""

import asyncio
import contextlib
import gc
import json
import os
import resource
import sys
import time
from collections import Counter
from datetime import datetime

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def _error_name(error: BaseException) -> str:
    if isinstance(error, ConnectionClosed):
        code = error.rcvd.code if error.rcvd else None
        return f"closed {code}"
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, OSError) and error.errno:
        return f"{type(error).__name__} errno {error.errno}"
    return type(error).__name__


class Clients:
    def __init__(self, url: str, users: list[dict], index: int, processes: int):
        self.url = url
        self.mine = [(n, user) for n, user in enumerate(users) if n % processes == index]
        self.connections: dict[int, object] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.closed: Counter = Counter()
        self.reset()

    def reset(self) -> None:
        self.received: dict[int, list[int]] = {}
        self.latencies: list[tuple[float, float]] = []  # (receive time, latency ms)
        self.other_frames: Counter = Counter()
        self.frames = 0
        self.gc_pauses: list[tuple[float, float]] = []  # (start time, ms), generation 2

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = (time.time(), time.perf_counter())
        elif info["generation"] == 2:
            at, began = self._gc_started
            self.gc_pauses.append((at, (time.perf_counter() - began) * 1000))

    def _options(self) -> dict:
        return {
            "compression": None,  # daphne (autobahn) accepts no permessage-deflate anyway
            "proxy": None,  # never an HTTP proxy from the environment: loopback only
            "ping_interval": None,  # the server pings (daphne: every 20 s); we answer
            "open_timeout": 60,
            "close_timeout": 2,
            "max_queue": 256,
        }

    async def _open(self, user: dict):
        ws = await connect(f"{self.url}?token={user['token']}", **self._options())
        try:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
        except BaseException:
            await ws.close()
            raise
        if hello.get("type") != "hello":
            await ws.close()
            raise RuntimeError(f"first frame is not hello: {hello.get('type')}")
        return ws

    async def warmup(self, count: int) -> dict:
        failed: Counter = Counter()
        for _n, user in self.mine[:count]:
            try:
                ws = await self._open(user)
                await ws.close()
            except Exception as error:  # noqa: BLE001 - reported
                failed[_error_name(error)] += 1
        return {"ok": count - sum(failed.values()), "failed": dict(failed)}

    async def _hold(self, user_id: int, ws) -> None:
        received_now = time.time
        try:
            while True:
                raw = await ws.recv()
                now = received_now()
                frame = json.loads(raw)
                seq = frame.get("id")
                if seq is None:
                    self.other_frames[frame.get("type", "?")] += 1
                    continue
                self.frames += 1
                self.received.setdefault(user_id, []).append(seq)
                sent = datetime.fromisoformat(frame["ts"]).timestamp()
                self.latencies.append((now, (now - sent) * 1000))
        except ConnectionClosed as error:
            self.closed[_error_name(error)] += 1
        finally:
            self.connections.pop(user_id, None)

    async def connect(self, upto: int, concurrency: int) -> dict:
        gate = asyncio.Semaphore(max(concurrency, 1))
        failed: Counter = Counter()
        started = time.monotonic()

        async def one(user: dict) -> None:
            async with gate:
                try:
                    ws = await self._open(user)
                except Exception as error:  # noqa: BLE001 - reported
                    failed[_error_name(error)] += 1
                    return
            self.connections[user["id"]] = ws
            self.tasks[user["id"]] = asyncio.create_task(self._hold(user["id"], ws))

        todo = [user for n, user in self.mine if n < upto and user["id"] not in self.tasks]
        await asyncio.gather(*(one(user) for user in todo))
        gc.collect()
        gc.freeze()
        return {
            "new": len(todo) - sum(failed.values()),
            "failed": dict(failed),
            "open": len(self.connections),
            "seconds": round(time.monotonic() - started, 3),
        }

    def collect(self) -> dict:
        return {
            "received": {str(user_id): ids for user_id, ids in self.received.items()},
            "latencies": [[round(at, 4), round(ms, 3)] for at, ms in self.latencies],
            "other_frames": dict(self.other_frames),
            "gc_gen2": [[round(at, 4), round(ms, 2)] for at, ms in self.gc_pauses],
            "open": len(self.connections),
            "closed": dict(self.closed),
        }


async def main(argv: list[str]) -> None:
    url, users_path, index, processes = argv[0], argv[1], int(argv[2]), int(argv[3])
    with open(users_path) as handle:
        users = json.load(handle)["users"]
    clients = Clients(url, users, index, processes)
    gc.callbacks.append(clients.on_gc)
    loop = asyncio.get_running_loop()

    def reply(payload: dict) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        name = command["cmd"]
        if name == "warmup":
            reply(await clients.warmup(command["count"]))
        elif name == "connect":
            reply(await clients.connect(command["upto"], command["concurrency"]))
        elif name == "reset":
            clients.reset()
            reply({"open_ids": sorted(clients.connections)})
        elif name == "count":
            reply({"frames": clients.frames, "open": len(clients.connections)})
        elif name == "collect":
            reply(clients.collect())
        elif name == "quit":
            reply({"ok": True})
            break
    # Leave without closing thousands of connections one by one: the kernel resets them.
    os._exit(0)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if len(sys.argv) != 5:
        sys.stderr.write(__doc__ or "")
        sys.exit(2)
    asyncio.run(main(sys.argv[1:]))
