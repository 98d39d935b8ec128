"""Liveness and readiness for load balancers and orchestrators (no authentication)."""

import asyncio

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


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as error:
        return f"error: {type(error).__name__}"


def _check_redis() -> str:
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
        return await asyncio.wait_for(layer.receive(channel), timeout=2)

    try:
        received = async_to_sync(round_trip)()
    except (RedisError, OSError, TimeoutError, ChannelFull) as error:
        return f"error: {type(error).__name__}"
    return "ok" if received.get("type") == "health.check" else "error: wrong message"


def _check_celery() -> str:
    """At least one worker answers a ping through the broker."""
    try:
        replies = celery_app.control.ping(timeout=1.0, limit=1)  # the first answer will do
    except (RedisError, OSError, KombuError) as error:
        return f"error: {type(error).__name__}"
    return "ok" if replies else "error: no worker answered"


@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    checks = {
        "database": _check_database(),
        "redis": _check_redis(),
        "channel_layer": _check_channel_layer(),
        "celery": _check_celery(),
    }
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
