"""daphne with probes, for ``BENCH_WS_PROBE=1``: where the event loop stalls.

    BENCH_WS_PROBE_FILE=probe.jsonl python -m bench.ws_daphne <daphne arguments>

Runs daphne's own command line in this process after adding, in this process only (the
application and daphne are not changed):

- a lag sampler: a reactor timer every 10 ms; a firing more than 10 ms late is a stall of the
  event loop (nothing else can run: no frame is read, written or delivered);
- ``gc.callbacks``: every generation-2 collection, and any collection over 5 ms; for each
  generation-1 collection, how many objects it moved to the old generation (a full collection
  runs once those reach 25 % of what the last one left there);
- timers around daphne's periodic sweeps over every connection, ``Server.application_checker``
  (each second) and ``Server.timeout_checker`` (every 2 s; it also sends the keep-alive pings);
- on SIGUSR1, the objects the cycle collector tracks (what a full collection walks), by type;
- on SIGUSR2, one full collection, timed (``bench.ws`` asks after the last level).

An experiment, not a fix: ``BENCH_WS_GC_FREEZE_EVERY=S`` calls ``gc.freeze()`` every S seconds,
so full collections only walk what was allocated since (objects frozen are never collected).

Each observation is one JSON line: ``{"kind", "at" (time.time() at its start), "ms", ...}``.
"""

import gc
import json
import os
import signal
import sys
import time
from collections import Counter

LAG_INTERVAL = 0.01
LAG_REPORT_MS = 10.0
GC_REPORT_MS = 5.0

_out = open(os.environ["BENCH_WS_PROBE_FILE"], "a", buffering=1)  # noqa: SIM115 - process-long


def record(kind: str, at: float, ms: float, **extra) -> None:
    _out.write(json.dumps({"kind": kind, "at": round(at, 4), "ms": round(ms, 3), **extra}) + "\n")


_gc_started: list[float] = [0.0, 0.0, 0]


def _on_gc(phase: str, info: dict) -> None:
    generation = info["generation"]
    if phase == "start":
        # What a young collection examines (cheap: the young generations are small). Objects
        # surviving a generation-1 collection move to the old generation; when those moved since
        # the last full collection reach 25 % of the objects it left, the next one is full.
        young = len(gc.get_objects(0)) + len(gc.get_objects(1)) if generation == 1 else 0
        _gc_started[:] = [time.perf_counter(), time.time(), young]
        return
    ms = (time.perf_counter() - _gc_started[0]) * 1000
    if generation == 2 or ms > GC_REPORT_MS:
        record("gc", _gc_started[1], ms, generation=generation, collected=info["collected"])
    if generation == 1:
        record("promoted", _gc_started[1], ms, n=_gc_started[2] - info["collected"])


def _time_sweeps(server_class) -> None:
    for name in ("application_checker", "timeout_checker"):
        original = getattr(server_class, name)

        def timed(self, _original=original, _name=name):
            at, began = time.time(), time.perf_counter()
            try:
                return _original(self)
            finally:
                record(_name, at, (time.perf_counter() - began) * 1000, conns=len(self.connections))

        setattr(server_class, name, timed)


def _start_lag_sampler(reactor) -> None:
    def tick(expected: float) -> None:
        now = time.monotonic()
        late_ms = (now - expected) * 1000
        if late_ms > LAG_REPORT_MS:
            record("stall", time.time() - late_ms / 1000, late_ms)
        reactor.callLater(LAG_INTERVAL, tick, time.monotonic() + LAG_INTERVAL)

    reactor.callLater(LAG_INTERVAL, tick, time.monotonic() + LAG_INTERVAL)


def _count_objects(signum, frame) -> None:
    """The tracked objects, by type (the 60 most common)."""
    at, began = time.time(), time.perf_counter()
    objects = gc.get_objects()
    types = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in objects)
    record(
        "objects",
        at,
        (time.perf_counter() - began) * 1000,
        count=len(objects),
        types=dict(types.most_common(60)),
    )


def _time_full_collection(signum, frame) -> None:
    """What a full collection would cost now (it stalls daphne: never during a measurement)."""
    at, began = time.time(), time.perf_counter()
    collected = gc.collect()
    record("full_gc", at, (time.perf_counter() - began) * 1000, collected=collected)


def _start_freezing(reactor, every: float) -> None:
    def freeze() -> None:
        at, began = time.time(), time.perf_counter()
        gc.freeze()
        # (not gc.get_freeze_count(): it walks every frozen object, itself a stall at 10,000
        # connections)
        record("freeze", at, (time.perf_counter() - began) * 1000)
        reactor.callLater(every, freeze)

    reactor.callLater(every, freeze)


def main() -> None:
    from daphne import server  # installs the asyncio reactor, as daphne's CLI does
    from daphne.cli import CommandLineInterface
    from twisted.internet import reactor

    gc.callbacks.append(_on_gc)
    _time_sweeps(server.Server)
    reactor.callWhenRunning(_start_lag_sampler, reactor)
    signal.signal(signal.SIGUSR1, _count_objects)
    freeze_every = float(os.environ.get("BENCH_WS_GC_FREEZE_EVERY") or 0)
    if freeze_every > 0:
        reactor.callWhenRunning(_start_freezing, reactor, freeze_every)
    signal.signal(signal.SIGUSR2, _time_full_collection)
    sys.argv[0] = "daphne"
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
