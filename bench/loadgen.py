"""A small closed-loop load generator for when wrk is not installed.

``concurrency`` threads, each with one keep-alive ``http.client`` connection (reopened when the
server closes it, as gunicorn's sync workers do after every response), send POST
/api/v1/transfers as random bench users for ``duration`` seconds. It reports the same shape as
``bench/transfer.lua``'s ``done()``. Python threads cost the server CPU on a small machine, so
``bench.run`` prefers wrk; numbers from this generator are a lower bound.
"""

import http.client
import json
import random
import threading
import time
from collections import Counter

PATH = "/api/v1/transfers"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def run(
    *,
    host: str,
    port: int,
    users: list[dict],
    concurrency: int,
    duration: float,
    key_prefix: str,
    timeout: float = 10.0,
) -> dict:
    started = time.monotonic()
    deadline = started + duration
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors: Counter = Counter()
    received = [0]

    def worker(number: int) -> None:
        rng = random.Random(f"{key_prefix}-{number}")
        own_latencies, own_statuses, own_errors = [], Counter(), Counter()
        connection = None
        sent = 0
        while time.monotonic() < deadline:
            sent += 1
            sender = rng.randrange(len(users))
            recipient = rng.randrange(len(users) - 1)
            if recipient >= sender:
                recipient += 1
            body = json.dumps({"recipient": users[recipient]["quickpe_id"], "amount": "1.00"})
            headers = {
                "Authorization": f"Bearer {users[sender]['access']}",
                "Content-Type": "application/json",
                "Idempotency-Key": f"{key_prefix}-{number}-{sent}",
            }
            begin = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(host, port, timeout=timeout)
                connection.request("POST", PATH, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                own_latencies.append((time.perf_counter() - begin) * 1e6)
                own_statuses[response.status] += 1
                received[0] += len(payload)
                if response.will_close:
                    connection.close()
                    connection = None
            except TimeoutError:
                own_errors["timeout"] += 1
                connection = _close(connection)
            except ConnectionRefusedError:
                own_errors["connect"] += 1
                connection = _close(connection)
                time.sleep(0.01)
            except (OSError, http.client.HTTPException):
                own_errors["read"] += 1
                connection = _close(connection)
        _close(connection)
        with lock:
            latencies.extend(own_latencies)
            statuses.update(own_statuses)
            errors.update(own_errors)

    threads = [
        threading.Thread(target=worker, args=(number,), daemon=True)
        for number in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    elapsed = time.monotonic() - started
    latencies.sort()
    non_2xx = sum(number for status, number in statuses.items() if not 200 <= status < 400)
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": received[0],
        "errors": {
            "connect": errors["connect"],
            "read": errors["read"],
            "write": 0,
            "status": non_2xx,
            "timeout": errors["timeout"],
        },
        "latency_us": {
            "mean": sum(latencies) / len(latencies) if latencies else 0.0,
            "max": latencies[-1] if latencies else 0.0,
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "p999": percentile(latencies, 0.999),
        },
        "statuses": {str(status): number for status, number in sorted(statuses.items())},
    }


def _close(connection):
    if connection is not None:
        connection.close()
    return None
