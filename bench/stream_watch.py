"""What the once-a-second look for lost doorbells (``notifications/stream_watch.py``) costs a
daphne process, per open socket: the look over N sockets of N different users, none of them
behind (the idle case, where it finds nothing to send), timed in this process.

    python -m quickpe.embedded run -- python -m bench.stream_watch [N ...]

1. A fresh database ``quickpe_bench_watch`` on the same server (``quickpe`` is never touched),
   migrated, with max(N) users (default levels 1000 5000 10000) and an event stream each,
   bulk-inserted.
2. Per level: N stand-ins for ``EventStreamConsumer`` (a user, the position sent so far)
   followed on an event loop, as daphne's consumers are; the look run ROUNDS times (its query
   goes through ``database_sync_to_async``, as in daphne). CPU is this process's (daphne's
   share); wall time adds PostgreSQL's answer.
3. Per socket and second: a look per second, divided by N.
"""

import asyncio
import os
import subprocess
import sys
import time

from bench.run import BASE_DIR, PY, bench_database, out, recreate_database, table

ROUNDS = 30
LEVELS = [1000, 5000, 10000]


class StandIn:
    """What the look reads of a consumer."""

    def __init__(self, user):
        self.user = user
        self.sent = 0


def prepare(count: int) -> list:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from notifications.models import EventStream
    from wallet.models import User

    unusable = make_password(None)  # what set_unusable_password stores
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(
                    email=f"watch{number:05d}@bench.quickpe.test",
                    quickpe_id=f"QP{90_000_000 + number}",
                    first_name="Watch",
                    last_name=f"{number:05d}",
                    password=unusable,
                )
                for number in range(count)
            ],
            batch_size=2000,
        )
        EventStream.objects.bulk_create(
            [EventStream(user=user, last_seq=7) for user in users], batch_size=2000
        )
    return users


async def measure(users: list, count: int) -> dict:
    from notifications import stream_watch

    stand_ins = [StandIn(user) for user in users[:count]]
    for stand_in in stand_ins:
        stand_in.sent = 7  # caught up: the look finds nothing to send
    watch = stream_watch._Watch()
    watch.consumers.update(stand_ins)
    await watch.look()  # warm: the sync thread's connection, the query's plan
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(ROUNDS):
        await watch.look()
    cpu_ms = (time.process_time() - cpu) * 1000 / ROUNDS
    wall_ms = (time.perf_counter() - wall) * 1000 / ROUNDS
    return {
        "sockets": count,
        "cpu_ms_per_look": round(cpu_ms, 2),
        "wall_ms_per_look": round(wall_ms, 2),
        "cpu_us_per_socket_second": round(cpu_ms * 1000 / count, 3),
        "wall_us_per_socket_second": round(wall_ms * 1000 / count, 3),
    }


def main(argv: list[str]) -> int:
    levels = sorted(int(level) for level in argv) or LEVELS
    development, bench = bench_database("quickpe_bench_watch")
    recreate_database(bench, development)
    env = {**os.environ, "DATABASE_URL": bench.url}
    out("$ python manage.py migrate  (DATABASE_URL=<quickpe_bench_watch>)")
    migrate = [PY, "manage.py", "migrate", "--no-input", "-v", "0"]
    subprocess.run(migrate, cwd=BASE_DIR, env=env, check=True, timeout=300)  # noqa: S603
    os.environ["DATABASE_URL"] = bench.url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    import django

    django.setup()
    users = prepare(max(levels))
    rows = [asyncio.run(measure(users, count)) for count in levels]
    out(f"The look over N idle sockets, {ROUNDS} rounds each (python -m bench.stream_watch):")
    out(
        table(
            ["sockets", "CPU per look", "wall per look", "CPU per socket-second"],
            [
                [
                    f"{row['sockets']:,}",
                    f"{row['cpu_ms_per_look']} ms",
                    f"{row['wall_ms_per_look']} ms",
                    f"{row['cpu_us_per_socket_second']} us",
                ]
                for row in rows
            ],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
