"""Liveness and readiness for load balancers and orchestrators (no authentication)."""

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET
from redis import RedisError

from quickpe.redis import get_redis


def _check_database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not ready", reported as text
        return f"error: {type(error).__name__}"


def _check_redis() -> str:
    try:
        get_redis().ping()
        return "ok"
    except (RedisError, OSError) as error:
        return f"error: {type(error).__name__}"


@require_GET
def live(request):
    return JsonResponse({"status": "ok"})


@require_GET
def ready(request):
    checks = {"database": _check_database(), "redis": _check_redis()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )
