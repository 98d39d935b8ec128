"""Where one transfer's Python CPU goes, measured in-process (no HTTP server, no load).

``python -m bench.profile USERS_JSON [REQUESTS]`` with ``DATABASE_URL`` pointing at the bench
database. It drives POST /api/v1/transfers through Django's test client in one thread and
wraps the main steps (JWT authentication, the idempotency wrapper, the transfer handler,
recipient lookup, wallet locks, the audit append, response serialization) with thread-CPU
timers, and every SQL statement with Django's ``execute_wrapper``. Only this process is
patched; the application code is not changed. Sampling profilers (py-spy) and cProfile's
CPU timer both mislead here: the first counts time blocked in psycopg's poll() as busy, the
second costs more than the code it measures; timers around a dozen calls cost next to nothing.
Prints one JSON object: CPU (thread_time) and wall milliseconds per request for each step.
"""

import functools
import json
import os
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

import django

STEPS = [
    ("request", "whole request (Django test client, no HTTP server)"),
    ("auth", "JWT authentication (decode token + SELECT user)"),
    ("idempotent", "idempotency wrapper, total"),
    ("handler", "  transfer handler (in the key's transaction)"),
    ("validate", "    request validation (TransferRequestSerializer)"),
    ("perform", "    perform: recipient lookup + transfer_create"),
    ("recipient", "      recipient_resolve (SELECT user)"),
    ("transfer", "      transfer_create"),
    ("apply", "        transfer_apply (the money part)"),
    ("lock", "          wallets_lock (SELECT ... FOR UPDATE)"),
    ("write", "          _write (the transfer, both wallets, both lines: one statement)"),
    ("audit", "          audit_append (head lock, seq, entry hashed by PostgreSQL: one statement)"),
    ("notices", "        notifications_create (both notifications)"),
    ("events", "        events_emit (seven events, stream heads, doorbell after commit)"),
    ("serialize", "    response serialization (_movement_result)"),
    ("idem_rest", "  idempotency bookkeeping (guard+lookup, key INSERT, BEGIN/COMMIT, hooks)"),
    ("outside", "Django + DRF around the view (middleware, dispatch, render)"),
    ("sql", "all SQL statements seen by Django (psycopg + cursor wrappers)"),
]


class Clock:
    def __init__(self):
        self.cpu = defaultdict(float)
        self.wall = defaultdict(float)
        self.calls = defaultdict(int)

    def wrap(self, label, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            cpu, wall = time.thread_time(), time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.cpu[label] += time.thread_time() - cpu
                self.wall[label] += time.perf_counter() - wall
                self.calls[label] += 1

        return timed

    def reset(self):
        self.cpu.clear()
        self.wall.clear()
        self.calls.clear()


def instrument(clock: Clock) -> None:
    from rest_framework_simplejwt.authentication import JWTAuthentication

    from wallet.api import money as views
    from wallet.api.serializers import TransferRequestSerializer
    from wallet.services import money as services

    JWTAuthentication.authenticate = clock.wrap("auth", JWTAuthentication.authenticate)
    TransferRequestSerializer.is_valid = clock.wrap("validate", TransferRequestSerializer.is_valid)
    views.TransferCreateView.perform = clock.wrap("perform", views.TransferCreateView.perform)
    views._movement_result = clock.wrap("serialize", views._movement_result)
    services.recipient_resolve = clock.wrap("recipient", services.recipient_resolve)
    services.transfer_create = clock.wrap("transfer", services.transfer_create)
    services.transfer_apply = clock.wrap("apply", services.transfer_apply)
    services.wallets_lock = clock.wrap("lock", services.wallets_lock)
    services._write = clock.wrap("write", services._write)
    services.notifications_create = clock.wrap("notices", services.notifications_create)
    services.events_emit = clock.wrap("events", services.events_emit)
    services.audit_append = clock.wrap("audit", services.audit_append)
    idempotent = views.idempotent

    def idempotent_timed(request, view, handler):
        return idempotent(request, view, clock.wrap("handler", handler))

    views.idempotent = clock.wrap("idempotent", idempotent_timed)


def main(argv: list[str]) -> int:
    users = json.loads(Path(argv[0]).read_text())["users"]
    requests = int(argv[1]) if len(argv) > 1 else 300
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    django.setup()
    from django.db import connection
    from django.test import Client

    if connection.settings_dict["NAME"] == "quickpe":
        raise SystemExit("bench.profile refuses to write to the development database")
    clock = Clock()
    instrument(clock)
    client = Client(HTTP_HOST="127.0.0.1")
    rng = random.Random(7)
    prefix = f"profile-{time.time_ns()}"
    statements = [0]

    def sql(execute, sql, params, many, context):
        statements[0] += 1
        return clock.wrap("sql", execute)(sql, params, many, context)

    def one(number: int) -> None:
        sender = rng.randrange(len(users))
        recipient = rng.randrange(len(users) - 1)
        recipient += recipient >= sender
        response = clock.wrap("request", client.post)(
            "/api/v1/transfers",
            data=json.dumps({"recipient": users[recipient]["quickpe_id"], "amount": "1.00"}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {users[sender]['access']}",
            HTTP_IDEMPOTENCY_KEY=f"{prefix}-{number}",
        )
        if response.status_code != 201:
            raise SystemExit(f"transfer failed: {response.status_code} {response.content[:300]}")

    with connection.execute_wrapper(sql):
        for number in range(30):  # warm-up: imports, URL resolver, first connection
            one(number)
        clock.reset()
        statements[0] = 0
        for number in range(requests):
            one(1000 + number)

    cpu = {key: value * 1000 / requests for key, value in clock.cpu.items()}
    wall = {key: value * 1000 / requests for key, value in clock.wall.items()}
    for table in (cpu, wall):
        table["idem_rest"] = table["idempotent"] - table["handler"]
        table["outside"] = table["request"] - table["idempotent"] - table["auth"]
    result = {
        "requests": requests,
        "sql_statements_per_request": round(statements[0] / requests, 1),
        "steps": [
            {
                "step": key,
                "label": label,
                "cpu_ms": round(cpu.get(key, 0.0), 3),
                "wall_ms": round(wall.get(key, 0.0), 3),
            }
            for key, label in STEPS
        ],
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
