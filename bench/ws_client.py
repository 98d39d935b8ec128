"""A WebSocket client process for ``bench.ws``: holds its share of the users' connections.

    python -m bench.ws_client URL USERS.json INDEX PROCESSES [quickpe|socketio]

Holds one connection per user whose position in USERS.json is INDEX modulo PROCESSES, with
``websockets`` on asyncio, and reads every frame as it arrives: for each event frame the
receive time (``time.time()``, this machine's clock, the one the server's ``ts`` comes from)
minus ``ts`` is the delivery latency. The same code measures both servers ``bench.ws``
compares; only the protocol around the frames differs:

- ``quickpe`` (the default): QuickPe's stream, ``URL?token=...``; the server's first frame is
  ``hello``, then each event is a frame ``{"id", "type", "ts", "data"}``; keep-alive is
  WebSocket ping/pong, answered by ``websockets``.
- ``socketio``: the Socket.IO reference (``bench/socketio/server.js``), Engine.IO 4 over its
  WebSocket transport: the server opens with ``0{...}``, the client connects to the main
  namespace with its token as the auth payload (``40{"token": ...}``) and the server accepts
  with ``40{...}`` (or refuses with ``44{...}``); each event is ``42["event", frame]`` with
  the same frame; the server's ``2`` (ping) is answered ``3`` (pong).

Driven by ``bench.ws`` through JSON lines on stdin, one JSON line answered on stdout per
command:

    {"cmd": "warmup", "count": K}         open K connections, read hello, close them
    {"cmd": "connect", "upto": N, "concurrency": C}
                                          connect every own user among the first N
    {"cmd": "reset"}                      start a measurement phase (forget frames so far);
                                          answers the users whose connection is open
    {"cmd": "count"}                      event frames received in this phase
    {"cmd": "collect"}                    the phase's ids per user, (receive time, latency ms),
                                          bytes of event frames
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

QUICKPE, SOCKETIO = "quickpe", "socketio"
MODES = (QUICKPE, SOCKETIO)
_EVENT = "42"  # Engine.IO message (4) carrying a Socket.IO event (2)


class Refused(Exception):
    """The server answered the handshake with a refusal (Socket.IO ``44``) or no hello."""


def _error_name(error: BaseException) -> str:
    if isinstance(error, Refused):
        return f"refused {error}"
    if isinstance(error, ConnectionClosed):
        code = error.rcvd.code if error.rcvd else None
        return f"closed {code}"
    if isinstance(error, InvalidStatus):
        return f"http {error.response.status_code}"
    if isinstance(error, OSError) and error.errno:
        return f"{type(error).__name__} errno {error.errno}"
    return type(error).__name__


def _options() -> dict:
    return {
        "compression": None,  # neither server compresses (autobahn cannot; Socket.IO is told so)
        "proxy": None,  # never an HTTP proxy from the environment: loopback only
        "ping_interval": None,  # the server pings (both: every 50 s); we answer
        "open_timeout": 60,
        "close_timeout": 2,
        "max_queue": 256,
    }


async def open_stream(url: str, mode: str, token: str, query: str = "") -> tuple[object, dict]:
    """One authenticated connection: (the websocket, the server's first frame after it).
    ``query`` is appended to QuickPe's URL (``&last_event_id=N`` resumes)."""
    if mode == QUICKPE:
        ws = await connect(f"{url}?token={token}{query}", **_options())
    else:
        ws = await connect(url, **_options())
    try:
        if mode == QUICKPE:
            hello = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if hello.get("type") != "hello":
                raise Refused(f"first frame {hello.get('type')}")
            return ws, hello
        opened = await asyncio.wait_for(ws.recv(), 60)
        if not opened.startswith("0"):
            raise Refused(f"engine.io open {opened[:2]!r}")
        await ws.send("40" + json.dumps({"token": token}))
        while True:
            packet = await asyncio.wait_for(ws.recv(), 60)
            if packet == "2":
                await ws.send("3")
            elif packet.startswith("40"):
                return ws, json.loads(packet[2:] or "{}")
            else:
                raise Refused(packet[:2])
    except BaseException:
        await ws.close()
        raise


async def next_event(ws, mode: str) -> tuple[dict | None, str]:
    """The next frame: (the event frame, its text) or (None, text) for anything else; answers
    Socket.IO's pings on the way, as a Socket.IO client does."""
    while True:
        raw = await ws.recv()
        if mode == QUICKPE:
            frame = json.loads(raw)
            return (frame if "id" in frame else None), raw
        if raw == "2":
            await ws.send("3")
            continue
        if raw.startswith(_EVENT):
            return json.loads(raw[2:])[1], raw
        return None, raw


def _kind(mode: str, raw: str) -> str:
    """What a frame that is not an event is, for the report."""
    if mode == QUICKPE:
        return json.loads(raw).get("type", "?")
    return f"packet {raw[:2]}"


class Clients:
    def __init__(self, url: str, users: list[dict], index: int, processes: int, mode: str):
        self.url, self.mode = url, mode
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
        self.frame_bytes = 0
        self.gc_pauses: list[tuple[float, float]] = []  # (start time, ms), generation 2

    def on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = (time.time(), time.perf_counter())
        elif info["generation"] == 2:
            at, began = self._gc_started
            self.gc_pauses.append((at, (time.perf_counter() - began) * 1000))

    async def _open(self, user: dict):
        ws, _hello = await open_stream(self.url, self.mode, user["token"])
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
        mode = self.mode
        try:
            while True:
                frame, raw = await next_event(ws, mode)
                now = received_now()
                if frame is None:
                    self.other_frames[_kind(mode, raw)] += 1
                    continue
                self.frames += 1
                self.frame_bytes += len(raw)
                self.received.setdefault(user_id, []).append(frame["id"])
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
            "frame_bytes": self.frame_bytes,
            "gc_gen2": [[round(at, 4), round(ms, 2)] for at, ms in self.gc_pauses],
            "open": len(self.connections),
            "closed": dict(self.closed),
        }


async def main(argv: list[str]) -> None:
    url, users_path, index, processes = argv[0], argv[1], int(argv[2]), int(argv[3])
    mode = argv[4] if len(argv) > 4 else QUICKPE
    with open(users_path) as handle:
        users = json.load(handle)["users"]
    clients = Clients(url, users, index, processes, mode)
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
    if len(sys.argv) not in (5, 6) or sys.argv[5:] not in ([], *([m] for m in MODES)):
        sys.stderr.write(__doc__ or "")
        sys.exit(2)
    asyncio.run(main(sys.argv[1:]))
