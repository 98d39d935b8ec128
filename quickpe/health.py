"""Liveness and readiness for load balancers and orchestrators (no authentication).

Readiness answers within DEADLINE_SECONDS whatever its dependencies do: the four checks run
side by side in threads, each bounded by its own timeouts; a check still running at the
deadline is reported as ``error: timeout``. A Redis check ends on its own shortly after, its
thread freed for the next probe; a hung PostgreSQL (stopped, not dead) can hold a database
check until ``DATABASE_CONNECT_TIMEOUT`` or TCP gives up, and the pool's other threads keep
answering meanwhile.
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from kombu.exceptions import KombuError
from redis import RedisError

from quickpe.celery import app as celery_app
from quickpe.redis import get_redis

DEADLINE_SECONDS = 1.0
# The waits inside the deadline, with room to connect and close on a busy machine: for a message
# through the layer (channels-redis reads every 0.1 s) and for a Celery worker's first reply
# (milliseconds; with none, the check says so after this long).
ROUND_TRIP_SECONDS = 0.4
# Enough threads for a few probes at once even while each of them waits out a hung dependency.
_checks = ThreadPoolExecutor(max_workers=8, thread_name_prefix="readiness")


def _check_database() -> str:
    """``SELECT 1`` on a connection of its own (a pool thread's), closed afterwards: the
    request's connection could not be abandoned at the deadline."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as error:
        return f"error: {type(error).__name__}"
    finally:
        connection.close()


def _check_redis() -> str:
    """A PING with the request path's short timeouts. It ignores the circuit breaker
    (``quickpe.redis``): readiness reports what Redis does now."""
    try:
        get_redis().ping()
        return "ok"
    except (RedisError, OSError) as error:
        return f"error: {type(error).__name__}"


def _check_channel_layer() -> str:
    """A real round trip through the layer: send to a fresh channel and read it back."""
    layer = get_channel_layer()

    async def round_trip():
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "health.check"})
        return await layer.receive(channel)

    async def bounded():
        return await asyncio.wait_for(round_trip(), timeout=ROUND_TRIP_SECONDS)

    try:
        received = async_to_sync(bounded)()
    except (RedisError, OSError, TimeoutError, ChannelFull) as error:
        return f"error: {type(error).__name__}"
    return "ok" if received.get("type") == "health.check" else "error: wrong message"


def _check_celery() -> str:
    """At least one worker answers a ping through the broker. On a connection made for this
    check: a pooled one may be left over from before a Redis restart, and fail once."""
    options = {
        "socket_timeout": ROUND_TRIP_SECONDS,
        "socket_connect_timeout": ROUND_TRIP_SECONDS,
        # Replies are read by BRPOPs this long; closing the connection waits for the last one.
        "polling_interval": 0.1,
        # One try to connect: a broker that refuses is the answer, not something to wait out.
        "max_retries": 0,
    }
    try:
        with celery_app.connection_for_write(transport_options=options) as broker:
            # The first answer will do.
            replies = celery_app.control.ping(
                timeout=ROUND_TRIP_SECONDS, limit=1, connection=broker
            )
    except (RedisError, OSError, KombuError) as error:
        return f"error: {type(error).__name__}"
    return "ok" if replies else "error: no worker answered"


_CHECKS = {
    "database": _check_database,
    "redis": _check_redis,
    "channel_layer": _check_channel_layer,
    "celery": _check_celery,
}


@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    deadline = time.monotonic() + DEADLINE_SECONDS
    running = {name: _checks.submit(check) for name, check in _CHECKS.items()}
    checks = {}
    for name, future in running.items():
        try:
            checks[name] = future.result(timeout=max(deadline - time.monotonic(), 0))
        except TimeoutError:
            checks[name] = "error: timeout"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
