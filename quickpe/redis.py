from functools import cache

import redis
from django.conf import settings


@cache
def get_redis() -> redis.Redis:
    """One connection pool per process (redis-py resets it after a fork)."""
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
