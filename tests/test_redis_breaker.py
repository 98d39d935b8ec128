"""The circuit breaker in front of Redis (quickpe/redis.py), in one process: after a failure it
skips Redis for a while, then lets one caller at a time try, closes when Redis answers, and logs
the outage once, not per call. The processes' view (money requests during a hung Redis) is in
tests/test_redis_faults.py."""

import logging
import threading
import uuid

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quickpe.redis import CircuitBreaker, client_for, unless_broken


class Clock:
    """The breaker's clock, moved by hand (time-machine leaves time.monotonic alone)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def events(caplog) -> list[str]:
    return [record.msg["event"] for record in caplog.records if record.name == "quickpe.redis"]


def test_a_failure_skips_redis_for_a_while_then_one_caller_tries_it(caplog):
    clock = Clock()
    breaker = CircuitBreaker("test", seconds=3, clock=clock)
    with caplog.at_level(logging.INFO):
        assert breaker.allows()
        breaker.failed(RedisTimeoutError())
        assert not breaker.allows()
        clock.now += 2.9
        assert not breaker.allows()
        clock.now += 0.1
        assert breaker.allows()  # the trial
        assert not breaker.allows()  # everyone else, while it runs
        breaker.failed(RedisConnectionError())  # still away: another pause, logged no more
        clock.now += 2.9
        assert not breaker.allows()
        clock.now += 0.1
        assert breaker.allows()
        breaker.succeeded()
        assert breaker.allows() and breaker.allows()
        breaker.succeeded()

    assert events(caplog) == ["redis.unavailable", "redis.available"]
    unavailable = next(record.msg for record in caplog.records if record.name == "quickpe.redis")
    assert unavailable["error"] == "TimeoutError"


def test_among_many_threads_exactly_one_makes_the_trial():
    clock = Clock()
    breaker = CircuitBreaker("test", seconds=3, clock=clock)
    breaker.failed(RedisTimeoutError())
    clock.now += 3
    barrier = threading.Barrier(16)
    allowed = []

    def ask():
        barrier.wait(timeout=10)
        allowed.append(breaker.allows())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(allowed) == [False] * 15 + [True]


def test_a_redis_that_refuses_connections_is_asked_once_then_skipped(tmp_path):
    url = f"unix://{tmp_path}/{uuid.uuid4().hex[:8]}.sock"  # nothing listens there
    asked = []

    def ping():
        asked.append(True)
        return client_for(url).ping()

    assert unless_broken(url, ping) is None
    assert unless_broken(url, ping) is None
    assert unless_broken(url, ping) is None
    assert asked == [True]
