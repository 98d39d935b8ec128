"""Idempotency keys for money-moving POSTs, as the contract describes them.

The key row is written in the same transaction as the movement it guards, so a crash can never
leave one without the other. A transaction-scoped advisory lock on (user, key) tells a
concurrent duplicate apart from a finished one without waiting: if another transaction holds
it, the first request is still in flight (409); once that commits, the key row is visible and
the response is replayed. The unique (user, key) constraint is the last word: an attempt whose
key row collides with a committed one is rolled back and replays that one's answer.

Refusals (validation, insufficient funds, limits) are remembered too: the attempt's transaction
is rolled back whole and a second one stores the refusal under the key (refusals are the rare
path, so the common one pays for no savepoint).
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework import exceptions as drf
from rest_framework.response import Response

from quickpe import metrics
from quickpe.db import insert_models, models_from_rows, run_with_retries
from quickpe.errors import (
    PROBLEM_CONTENT_TYPE,
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    QuickPeError,
    problem_exception_handler,
)
from wallet.models import IdempotencyKey

HEADER = "Idempotency-Key"
# The in-flight guard and the key's row in one round trip. The row is read in the snapshot the
# statement starts with, before the lock is tried, so a duplicate that commits in between goes
# unseen: this attempt then runs too but cannot commit, because its key row collides with the
# duplicate's on the unique constraint (``_KeyTaken``); it is rolled back whole and run again,
# and finds the duplicate's answer.
_GUARD_AND_LOOKUP = """
    SELECT pg_try_advisory_xact_lock(%s) AS in_flight_guard, key_row.*
    FROM (SELECT 1) AS one
    LEFT JOIN wallet_idempotencykey AS key_row ON key_row.user_id = %s AND key_row.key = %s
"""
_UNIQUE_KEY = "wallet_idempotencykey_unique"
REPLAYED_HEADER = "Idempotent-Replayed"


def _validated_key(request) -> str:
    key = request.headers.get(HEADER)
    if key is None or key == "":
        raise IdempotencyKeyRequired()
    if len(key) > 255 or not all(0x20 <= ord(char) <= 0x7E for char in key):
        raise IdempotencyKeyInvalid()
    return key


def _fingerprint(request) -> tuple[str, drf.ParseError | None]:
    """Same method, path and JSON body (compared as parsed JSON, so key order and spacing do
    not matter; a body that is not JSON is compared byte for byte).

    Also returns the parse error of a body that is not JSON: DRF parses only once, and after a
    failure ``request.data`` is silently empty, so the handler must raise this one instead."""
    raw = request._request.body  # read before DRF parses; Django caches it
    error = None
    try:
        body = json.dumps(request.data, sort_keys=True, separators=(",", ":"), default=repr)
    except drf.ParseError as parse_error:
        body, error = raw.hex(), parse_error
    digest = hashlib.sha256("\0".join([request.method, request.path, body]).encode())
    return digest.hexdigest(), error


def _advisory_lock_id(user_id: int, key: str) -> int:
    raw = hashlib.sha256(f"idempotency:{user_id}:{key}".encode()).digest()[:8]
    return int.from_bytes(raw, "big", signed=True)


def _replay(outcome) -> Response:
    is_problem = outcome.status >= 400
    return Response(
        outcome.body,
        status=outcome.status,
        headers={REPLAYED_HEADER: "true"},
        content_type=PROBLEM_CONTENT_TYPE if is_problem else None,
    )


# Refusals that are remembered under the key; anything else is a bug and is not.
_REMEMBERED = (QuickPeError, drf.ValidationError, drf.ParseError)


class _KeyTaken(Exception):
    """A duplicate request committed this key after this attempt looked for it."""


class _Refused(Exception):
    """The handler refused (``error``); raised out of the attempt so its transaction rolls
    back. Only the handler's refusals are: the key's own errors (in flight, reused) are
    answers about the key, never stored under it."""

    def __init__(self, error: Exception):
        super().__init__(error)
        self.error = error


@dataclass
class Outcome:
    """What a money-moving request answered: kept under its key and given again on a replay."""

    status: int
    body: Any
    is_replay: bool = False


def run_once(
    *,
    user,
    key: str,
    fingerprint: str,
    handler: Callable[[], Outcome],
    refusal: Callable[[Exception], Outcome],
    kind: str = "money",
) -> Outcome:
    """Run ``handler`` at most once per (user, key) within the retention window, in one
    transaction with the key row; the API and the dashboard's money forms both come here.
    A refusal (``_REMEMBERED``) rolls that transaction back whole, and its ``refusal`` outcome
    is kept under the key by a second one, which first looks for the key again: a duplicate
    that ran in between has answered, and its answer is the one to give. Locks: a
    transaction-scoped advisory lock on (user, key), then whatever the handler locks."""

    def attempt(refused: Outcome | None = None) -> Outcome:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(_GUARD_AND_LOOKUP, [_advisory_lock_id(user.pk, key), user.pk, key])
                columns = [column.name for column in cursor.description]
                row = cursor.fetchone()
            if not row[0]:
                raise IdempotencyKeyInUse()
            found = row[columns.index("id")] is not None
            record = models_from_rows(IdempotencyKey, columns, [row])[0] if found else None
            cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_IDEMPOTENCY_TTL_HOURS)
            if record is not None and record.created_at < cutoff:
                record.delete()  # an expired key starts afresh
                record = None
            if record is not None:
                if record.fingerprint != fingerprint:
                    raise IdempotencyKeyReused()
                transaction.on_commit(metrics.REPLAYS.inc)
                return Outcome(record.response_status, record.response_body, is_replay=True)
            # No savepoint around the handler: a refusal leaves this block, and the whole
            # transaction (the advisory lock included) rolls back.
            if refused is not None:
                outcome = refused
            else:
                try:
                    outcome = handler()
                except _REMEMBERED as error:
                    raise _Refused(error) from error
            try:
                insert_models(
                    [
                        IdempotencyKey(
                            user=user,
                            key=key,
                            fingerprint=fingerprint,
                            response_status=outcome.status,
                            response_body=outcome.body,
                        )
                    ]
                )
            except IntegrityError as error:
                if getattr(getattr(error.__cause__, "diag", None), "constraint_name", "") == (
                    _UNIQUE_KEY
                ):
                    raise _KeyTaken from error
                raise
            return outcome

    def settled(refused: Outcome | None = None) -> Outcome:
        for _ in range(2):
            try:
                return run_with_retries(partial(attempt, refused))
            except _KeyTaken:
                continue  # a duplicate committed first: the next attempt replays its answer
        return run_with_retries(partial(attempt, refused))

    try:
        return settled()
    except _Refused as refused_error:
        error = refused_error.error
    code = str(getattr(error, "code", None) or "validation_error")
    outcome = settled(refusal(error))
    if not outcome.is_replay:
        transaction.on_commit(partial(metrics.refused, kind=kind, code=code, user=user.pk))
    return outcome


def idempotent(request, view, handler: Callable[[], Response]) -> Response:
    """The API's money POSTs: ``run_once`` keyed by the Idempotency-Key header."""
    key = _validated_key(request)
    fingerprint, parse_error = _fingerprint(request)
    context = {"request": request, "view": view}
    answered: list[Response] = []  # the handler's own Response, headers and all

    def run() -> Outcome:
        if parse_error is not None:
            raise parse_error
        response = handler()
        answered.append(response)
        return Outcome(response.status_code, response.data)

    def refuse(error: Exception) -> Outcome:
        response = problem_exception_handler(error, context)
        answered.append(response)
        return Outcome(response.status_code, response.data)

    outcome = run_once(
        user=request.user,
        key=key,
        fingerprint=fingerprint,
        handler=run,
        refusal=refuse,
        kind=getattr(view, "throttle_scope", "") or "money",
    )
    if outcome.is_replay:
        return _replay(outcome)
    return answered[-1]
