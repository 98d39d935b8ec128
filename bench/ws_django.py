"""The Django side of the WebSocket bench (``bench.ws``): data set-up and the transfer driver.

Run with ``DATABASE_URL`` pointing at the WebSocket bench database (never ``quickpe``), the
same ``SECRET_KEY``, ``REDIS_URL`` and ``QUICKPE_REDIS_PREFIX`` as the daphne process under test.

    python -m bench.ws_django setup OUT.json USERS SENDERS
        USERS users (one WebSocket connection each), the first SENDERS of them funded with
        ``deposit_create``; a device session per user (bulk-inserted) and an access token
        bound to it (``AccessToken.for_user`` plus the session claim, as a sign-in issues).
    python -m bench.ws_django transfers USERS.json CONNECTED RATE SECONDS
        ``transfer_create`` (each in its own ``transaction.atomic``) at a steady RATE per second
        for SECONDS, from a funded user to a random other user among the first CONNECTED (all of
        whom hold a connection). Prints one JSON line when ready to start, and one with what
        was committed at the end.
    python -m bench.ws_django record USERS.json CONNECTED COUNT OUT.json
        COUNT transfers between the same users as ``transfers`` with CONNECTED (the same
        random pattern, seeded by CONNECTED) as fast as they commit, then writes the frames
        each one put on the senders' and recipients' streams, per transfer, to OUT.json: the
        payloads the Socket.IO reference (``bench/socketio/publisher.js``) emits.

Only the users beyond the senders are bulk-inserted (User + Wallet rows through the ORM's
``bulk_create``: no sign-up audit entry, no Argon2); the senders' money comes from the real
deposit service, and every transfer goes through the real ``transfer_create``, so the events,
their ``seq`` numbers and the doorbells are exactly what the API would produce.
"""

import json
import logging
import os
import random
import sys
import time
import uuid
from datetime import timedelta

import django


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    django.setup()
    from django.db import connection

    if connection.settings_dict["NAME"] == "quickpe":
        raise SystemExit("bench.ws_django refuses to write to the development database")


def setup(out_path: str, count: int, senders: int) -> int:
    _setup_django()
    from django.conf import settings
    from django.contrib.auth.hashers import make_password
    from django.db import transaction
    from django.utils import timezone
    from rest_framework_simplejwt.tokens import AccessToken

    from quickpe.authentication import SESSION_CLAIM
    from wallet.models import DeviceSession, User, Wallet
    from wallet.references import new_quickpe_id
    from wallet.services.money import deposit_create
    from wallet.services.users import user_create

    started = time.monotonic()
    funds = int(os.environ.get("BENCH_WS_FUNDS_PAISE", str(10_000_000 * 100)))
    # The senders through the sign-up service (audit entry and all), then funded.
    funded = []
    for number in range(senders):
        user = user_create(
            email=f"ws{number:05d}@bench.quickpe.test",
            password=None,
            first_name="Ws",
            last_name=f"Sender {number:05d}",
        )
        with transaction.atomic():
            deposit_create(user=user, amount=funds, description="Bench funds")
        funded.append(user)
    # Everyone else in bulk: QuickPe IDs are 8 random digits, so 10,000 of them collide about
    # once in two runs; draw them distinct here (and distinct from the senders').
    taken = {user.quickpe_id for user in funded}
    unusable = make_password(None)  # what set_unusable_password stores (a random "!..." value)
    rest = []
    for number in range(senders, count):
        quickpe_id = new_quickpe_id()
        while quickpe_id in taken:
            quickpe_id = new_quickpe_id()
        taken.add(quickpe_id)
        rest.append(
            User(
                email=f"ws{number:05d}@bench.quickpe.test",
                quickpe_id=quickpe_id,
                first_name="Ws",
                last_name=f"User {number:05d}",
                password=unusable,
            )
        )
    with transaction.atomic():
        rest = User.objects.bulk_create(rest, batch_size=2000)
        Wallet.objects.bulk_create([Wallet(user=user) for user in rest], batch_size=2000)
    users = funded + rest
    minted = time.monotonic()
    # The stream accepts only tokens of an active device session, as the API does.
    expires = timezone.now() + timedelta(days=1)
    sessions = DeviceSession.objects.bulk_create(
        [
            DeviceSession(
                user=user,
                device="bench",
                device_key="bench",
                refresh_jti=uuid.uuid4().hex,
                expires_at=expires,
            )
            for user in users
        ],
        batch_size=2000,
    )
    tokens = []
    for user, session in zip(users, sessions, strict=True):
        token = AccessToken.for_user(user)
        token[SESSION_CLAIM] = session.pk
        tokens.append(str(token))
    payload = {
        "users": [
            {"id": user.pk, "token": token} for user, token in zip(users, tokens, strict=True)
        ],
        "senders": senders,
        "funds_paise": funds,
        "token_lifetime_s": settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds(),
        "seconds": round(time.monotonic() - started, 2),
        "token_seconds": round(time.monotonic() - minted, 2),
    }
    with open(out_path, "w") as handle:
        json.dump(payload, handle)
    return 0


class _Counter(logging.Handler):
    """Counts the records it sees: here, the times Redis failed a doorbell (``quickpe.redis``
    logs each outage once, and skips the doorbells for a few seconds after it)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += 1


def _pairs(users_path: str, connected: int):
    """(sender, recipient) forever, in the order both ``transfers`` and ``record`` use: a
    funded user and a random other user among the first ``connected``, seeded by
    ``connected`` so that a recording has the same pattern as a measured run."""
    from wallet.models import User

    with open(users_path) as handle:
        data = json.load(handle)
    ids = [user["id"] for user in data["users"][:connected]]
    by_id = User.objects.in_bulk(ids)
    senders = [by_id[user_id] for user_id in ids[: data["senders"]]]
    recipients = [by_id[user_id] for user_id in ids]
    rng = random.Random(connected)  # noqa: S311 - load pattern, not security
    while True:
        sender = rng.choice(senders)
        recipient = rng.choice(recipients)
        while recipient.pk == sender.pk:
            recipient = rng.choice(recipients)
        yield sender, recipient


def _transfer(sender, recipient) -> None:
    from django.db import transaction

    from wallet.services.money import transfer_create

    with transaction.atomic():
        transfer_create(sender=sender, recipient=recipient, amount=100, note="ws bench")


def transfers(users_path: str, connected: int, rate: float, seconds: float) -> int:
    _setup_django()
    pairs = _pairs(users_path, connected)
    failed_rings = _Counter()
    logging.getLogger("quickpe.redis").addHandler(failed_rings)
    total = int(rate * seconds)
    durations_ms, errors, late = [], {}, 0
    done = {"transfers": 0, "sender_events": 0, "recipient_events": 0}
    per_user: dict[int, int] = {}
    # A first line when set up, so that a process started beside this one can start with it.
    sys.stdout.write(json.dumps({"ready": True}) + "\n")
    sys.stdout.flush()
    cpu0 = time.process_time()
    start = time.monotonic() + 0.2
    for number in range(total):
        due = start + number / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.05:
            late += 1
        sender, recipient = next(pairs)
        began = time.perf_counter()
        try:
            _transfer(sender, recipient)
        except Exception as error:  # reported, never fatal: the bench counts what committed
            name = type(error).__name__
            errors[name] = errors.get(name, 0) + 1
            continue
        durations_ms.append((time.perf_counter() - began) * 1000)
        done["transfers"] += 1
        per_user[sender.pk] = per_user.get(sender.pk, 0) + 4
        per_user[recipient.pk] = per_user.get(recipient.pk, 0) + 3
    elapsed = time.monotonic() - start
    durations_ms.sort()

    def pct(q: float) -> float | None:
        if not durations_ms:
            return None
        return round(durations_ms[min(len(durations_ms) - 1, int(q * len(durations_ms)))], 2)

    sys.stdout.write(
        json.dumps(
            {
                **done,
                "planned": total,
                "rate_target": rate,
                "rate_achieved": round(done["transfers"] / elapsed, 2) if elapsed else 0,
                "elapsed_s": round(elapsed, 2),
                "late_starts": late,
                "errors": errors,
                "doorbell_failures": failed_rings.count,
                "tx_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
                "cpu_s": round(time.process_time() - cpu0, 3),
                "expected_events_by_user": {str(k): v for k, v in per_user.items()},
            }
        )
        + "\n"
    )
    sys.stdout.flush()
    return 0


def record(users_path: str, connected: int, count: int, out_path: str) -> int:
    """Not a measurement: the events are read back after each commit to group them by
    transfer (transfers run one at a time, so a transfer's events are the rows after the
    previous transfer's)."""
    _setup_django()
    from notifications.models import Event
    from notifications.services import event_frame

    pairs = _pairs(users_path, connected)
    last = Event.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    recorded = []
    started = time.monotonic()
    for _number in range(count):
        _transfer(*next(pairs))
        events = list(Event.objects.filter(pk__gt=last).order_by("pk"))
        last = events[-1].pk
        recorded.append([[event.user_id, event_frame(event)] for event in events])
    with open(out_path, "w") as handle:
        json.dump({"transfers": recorded, "seconds": round(time.monotonic() - started, 2)}, handle)
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["setup"] and len(argv) == 4:
        return setup(argv[1], int(argv[2]), int(argv[3]))
    if argv[:1] == ["transfers"] and len(argv) == 5:
        return transfers(argv[1], int(argv[2]), float(argv[3]), float(argv[4]))
    if argv[:1] == ["record"] and len(argv) == 5:
        return record(argv[1], int(argv[2]), int(argv[3]), argv[4])
    sys.stderr.write(__doc__ or "")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
