"""Redis as requests use it: short timeouts, no retries, and a circuit breaker per process.

Nothing QuickPe keeps in Redis is the truth (rate-limit windows, doorbells; PostgreSQL holds
the money and the events), so a request never waits long on it. Every client here gives up on
a connect or a reply after ``REDIS_TIMEOUT_SECONDS`` (settings), without retrying (a pooled
connection left over from a Redis restart is replaced when it is taken from the pool, before
any command). After a failure the breaker skips that Redis in this process for BREAK_SECONDS,
so a hung Redis costs one timeout per process every few seconds instead of one per request.
What is skipped fails open: a rate limit lets the request through, a doorbell is not rung
(open sockets find the events in PostgreSQL: ``notifications.stream_watch``). The outage is
logged once when the breaker opens and once when Redis answers again.

The state is in memory, per process: each gunicorn worker finds out on its own. That is only
a cost (one timeout each), never a wrong answer, so nothing is shared between processes.
"""

import threading
import time
from collections.abc import Callable
from functools import cache
from typing import TypeVar
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.exceptions import RedisError

from quickpe.logs import get_logger

# How long a process leaves a failed Redis alone before one request tries it again: what the
# outage costs a process is one REDIS_TIMEOUT_SECONDS per this many seconds.
BREAK_SECONDS = 3.0

logger = get_logger("quickpe.redis")
Result = TypeVar("Result")


class CircuitBreaker:
    """Closed: every call goes to Redis. Open (after a failure): calls are skipped, except one
    trial every ``seconds``; a trial that succeeds closes it. Safe across threads."""

    def __init__(self, where: str, *, seconds: float = BREAK_SECONDS, clock=time.monotonic):
        self.where = where
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._is_open = False
        self._trial_at = 0.0

    def allows(self) -> bool:
        with self._lock:
            if not self._is_open:
                return True
            now = self._clock()
            if now < self._trial_at:
                return False
            # This caller makes the trial; the others keep skipping until it has answered.
            self._trial_at = now + self.seconds
            return True

    def succeeded(self) -> None:
        with self._lock:
            was_open, self._is_open = self._is_open, False
        if was_open:
            logger.info("redis.available", redis=self.where)

    def failed(self, error: Exception) -> None:
        with self._lock:
            was_open, self._is_open = self._is_open, True
            self._trial_at = self._clock() + self.seconds
        if not was_open:
            logger.warning(
                "redis.unavailable",
                redis=self.where,
                error=type(error).__name__,
                skipped_seconds=self.seconds,
                effect="rate limits open, doorbells not rung; retried every few seconds",
            )


def _where(url: str) -> str:
    """The server of a Redis URL for a log line: host and port, or the socket, never a password."""
    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


@cache
def breaker_for(url: str) -> CircuitBreaker:
    return CircuitBreaker(_where(url))


@cache
def client_for(url: str) -> redis.Redis:
    """One connection pool per URL and process (redis-py makes a new one after a fork)."""
    timeout = settings.REDIS_TIMEOUT_SECONDS
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def get_redis() -> redis.Redis:
    """The shared Redis (``REDIS_URL``)."""
    return client_for(settings.REDIS_URL)


def unless_broken(url: str, call: Callable[[], Result]) -> Result | None:
    """``call()``, which talks to the Redis at ``url``, unless its breaker is open; None when
    it was skipped or failed (the failure opens the breaker)."""
    breaker = breaker_for(url)
    if not breaker.allows():
        return None
    try:
        result = call()
    except (RedisError, OSError) as error:
        breaker.failed(error)
        return None
    breaker.succeeded()
    return result
