"""Idempotency keys for money-moving POSTs, as the contract describes them.

A request with a key runs ``run_once``: one transaction (a unit of work) holding the key's
guard, the handler inside a savepoint, and the key row with the answer::

    lookup ──in flight (guard held)──────────────────────────▶ 409 in use (nothing stored)
      │    ──key row, other fingerprint──────────────────────▶ 422 reused (nothing stored)
      │    ──key row, same fingerprint───────────────────────▶ its answer again (replayed)
      ▼ no key row (or one past the retention window)
    handler, in a savepoint ──ok──────▶ store the answer ─┐
                            ──refused─▶ roll back to the  │
                                        savepoint, store  ├─commit──▶ the answer
                                        the refusal ──────┘
                                             └─unique key taken─▶ roll back all, look up again

Why each answer is right, with any number of duplicates at once:

- *The guard.* A transaction-scoped advisory lock on (user, key), tried without waiting in
  the lookup's statement. While one attempt holds it, a duplicate is told "in flight" (409)
  and changes nothing; it is released by the commit or rollback that ends the attempt.
- *The key row commits with the change.* The movement (in the handler's savepoint) and the key
  row are in one transaction: a crash leaves both or neither.
- *Refusals are answers too.* A refusal (``_REMEMBERED``) rolls back to the savepoint, so
  whatever the handler wrote before refusing is gone, and the refusal is stored under the key
  like a success. Answers about the key itself (in flight, reused) are never stored.
- *The unique key is the last word.* The lookup reads the snapshot its statement starts
  with, before the guard is tried: a duplicate may commit its key row in between. This attempt
  then cannot commit (its key row collides on ``wallet_idempotencykey_unique``); it is rolled
  back whole and run again, and the lookup finds the duplicate's answer.
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

from quickpe import metrics, statements
from quickpe.db import insert_models, models_from_rows
from quickpe.errors import (
    PROBLEM_CONTENT_TYPE,
    IdempotencyKeyInUse,
    IdempotencyKeyInvalid,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    QuickPeError,
    problem_exception_handler,
)
from quickpe.unit_of_work import savepoint, unit_of_work
from wallet.models import IdempotencyKey

HEADER = "Idempotency-Key"
_UNIQUE_KEY = "wallet_idempotencykey_unique"
# After a collision on the unique key the next lookup finds the duplicate's row, so a second
# attempt answers; the third is a margin.
_KEY_TAKEN_ATTEMPTS = 3
REPLAYED_HEADER = "Idempotent-Replayed"


def _validated_key(request) -> str:
    key = request.headers.get(HEADER)
    if key is None or key == "":
        raise IdempotencyKeyRequired()
    if len(key) > 255 or not all(0x20 <= ord(char) <= 0x7E for char in key):
        raise IdempotencyKeyInvalid()
    return key


def fingerprint(*, method: str, path: str, body: object) -> str:
    """What makes two requests the same request: method, path and body, the body compared as
    canonical JSON (sorted keys, no spacing), so key order and spacing do not matter. The API
    and the dashboard's money forms both use it."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256("\0".join([method, path, canonical]).encode()).hexdigest()


def _api_fingerprint(request) -> tuple[str, drf.ParseError | None]:
    """The fingerprint of an API request; a body that is not JSON is compared byte for byte.

    Also returns the parse error of a body that is not JSON: DRF parses only once, and after a
    failure ``request.data`` is silently empty, so the handler must raise this one instead."""
    raw = request._request.body  # read before DRF parses; Django caches it
    try:
        body, error = request.data, None
    except drf.ParseError as parse_error:
        body, error = raw.hex(), parse_error
    return fingerprint(method=request.method, path=request.path, body=body), error


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


@dataclass
class Outcome:
    """What a money-moving request answered: kept under its key and given again on a replay."""

    status: int
    body: Any
    is_replay: bool = False


def _lookup(*, user, key: str) -> IdempotencyKey | None:
    """Take the key's guard and find its row; raises ``IdempotencyKeyInUse`` while another
    attempt holds the guard. A row past the retention window is deleted: the key starts afresh."""
    with connection.cursor() as cursor:
        cursor.execute(
            statements.IDEMPOTENCY_GUARD_AND_LOOKUP, [_advisory_lock_id(user.pk, key), user.pk, key]
        )
        columns = [column.name for column in cursor.description]
        row = cursor.fetchone()
    if not row[0]:
        raise IdempotencyKeyInUse()
    if row[columns.index("id")] is None:
        return None
    record = models_from_rows(IdempotencyKey, columns, [row])[0]
    cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_IDEMPOTENCY_TTL_HOURS)
    if record.created_at < cutoff:
        record.delete()
        return None
    return record


def _store(*, user, key: str, fingerprint: str, outcome: Outcome) -> None:
    """The key row with its answer; ``_KeyTaken`` if a duplicate committed the key first."""
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
        if getattr(getattr(error.__cause__, "diag", None), "constraint_name", "") == _UNIQUE_KEY:
            raise _KeyTaken from error
        raise


def run_once(
    *,
    user,
    key: str,
    fingerprint: str,
    handler: Callable[[], Outcome],
    refusal: Callable[[Exception], Outcome],
    kind: str = "money",
) -> Outcome:
    """Run ``handler`` at most once per (user, key) within the retention window and return its
    outcome, or ``refusal(error)`` for what it refused, as the module docstring describes.
    Locks: a transaction-scoped advisory lock on (user, key), then what the handler locks."""

    @unit_of_work
    def attempt() -> Outcome:
        record = _lookup(user=user, key=key)
        if record is not None:
            if record.fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            transaction.on_commit(metrics.REPLAYS.inc)
            return Outcome(record.response_status, record.response_body, is_replay=True)
        try:
            with savepoint():
                outcome = handler()
        except _REMEMBERED as error:
            outcome = refusal(error)
            code = str(getattr(error, "code", None) or "validation_error")
            transaction.on_commit(partial(metrics.refused, kind=kind, code=code, user=user.pk))
        _store(user=user, key=key, fingerprint=fingerprint, outcome=outcome)
        return outcome

    for _ in range(_KEY_TAKEN_ATTEMPTS - 1):
        try:
            return attempt()
        except _KeyTaken:
            continue  # a duplicate committed first: the next attempt replays its answer
    return attempt()


@unit_of_work
def idempotency_keys_purge() -> int:
    """Delete keys past the retention window (an expired key starts afresh anyway). Returns
    how many were deleted."""
    cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def idempotent(request, view, handler: Callable[[], Response]) -> Response:
    """The API's money POSTs: ``run_once`` keyed by the Idempotency-Key header."""
    key = _validated_key(request)
    request_fingerprint, parse_error = _api_fingerprint(request)
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
        fingerprint=request_fingerprint,
        handler=run,
        refusal=refuse,
        kind=getattr(view, "throttle_scope", "") or "money",
    )
    if outcome.is_replay:
        return _replay(outcome)
    return answered[-1]
