"""One unit of work: how every whole change runs, declared the same way everywhere.

A *whole change* (a movement, a money request action, a support action, a session change, a
profile edit) is a service decorated with ``@unit_of_work``. The *pieces* a change is made of
(posting ledger lines, appending to the audit log, writing notifications, emitting events)
never open a transaction: they call ``require_unit()`` and run in the change's.

- Called with no transaction open, a unit of work is one durable transaction: when it
  returns, the change is committed. A deadlock or a serialization failure runs it again from
  the start (``ATTEMPTS`` in all, with jittered backoff), so callers never see one.
- Called inside a transaction someone else opened (the idempotency key's, the admin's change
  form, a shell session's), it joins it inside a savepoint: a refusal rolls back this change
  only and leaves the caller's transaction usable; the caller owns the commit and the retry.
  The idempotency wrapper opens that savepoint itself, around its whole handler
  (``savepoint()``), and a unit directly inside it joins without a second one.

Two rules keep concurrent changes from deadlocking (the lock order is in ``wallet.locks``),
asserted here for every unit: a transaction appends to one audit chain only
(``claim_audit_chain``) and emits events once (``claim_events_emit``).
"""

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import wraps
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection, transaction
from psycopg import errors as pg_errors

from quickpe import metrics

logger = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

ATTEMPTS = 5
_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


@dataclass
class _Unit:
    """What one transaction has done so far, for the rules above."""

    lock_rank: int = 0  # the latest place in the lock order (``wallet.locks``) taken
    audit_chain: int | None = None
    has_emitted: bool = False
    # ``len(connection.atomic_blocks)`` inside the savepoint ``savepoint()`` opened, while a
    # unit of work directly inside it may join it.
    joinable_depth: int | None = None


_current: ContextVar[_Unit | None] = ContextVar("quickpe_unit_of_work", default=None)


def is_retryable(error: OperationalError) -> bool:
    return isinstance(error.__cause__, _RETRYABLE)


def run_with_retries(work: Callable[[], T]) -> T:
    """Run ``work`` (which opens the outermost transaction) again after a deadlock or a
    serialization failure. Backs off briefly with jitter so the transactions that collided do
    not collide again in lockstep."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as error:
            if not is_retryable(error) or attempt >= ATTEMPTS:
                raise
            metrics.LOCK_RETRIES.labels(type(error.__cause__).__name__).inc()
            logger.warning(
                "retrying after %s (attempt %d)", type(error.__cause__).__name__, attempt
            )
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def _adopt(unit: _Unit, state: _Unit) -> None:
    unit.lock_rank, unit.audit_chain, unit.has_emitted = (
        state.lock_rank,
        state.audit_chain,
        state.has_emitted,
    )


@contextmanager
def _entered(unit: _Unit) -> Iterator[_Unit]:
    token = _current.set(unit)
    try:
        yield unit
    finally:
        _current.reset(token)


def _run_outermost(service: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    with _entered(_Unit()), transaction.atomic(durable=True):
        return service(*args, **kwargs)


def _run_joined(unit: _Unit | None, service: Callable[P, T], *args: P.args, **kwargs: P.kwargs):
    if unit is not None and unit.joinable_depth == len(connection.atomic_blocks):
        # Directly inside the savepoint the caller opened for it: that one is ours.
        with _entered(replace(unit, joinable_depth=None)) as joined:
            with transaction.atomic(savepoint=False):
                result = service(*args, **kwargs)
            _adopt(unit, joined)
            return result
    with _entered(replace(unit or _Unit(), joinable_depth=None)) as joined, transaction.atomic():
        result = service(*args, **kwargs)
    if unit is not None:  # committed to the caller's transaction: its rules now count
        _adopt(unit, joined)
    return result


def unit_of_work(service: Callable[P, T]) -> Callable[P, T]:
    """Run ``service`` as one whole change (see the module docstring)."""

    @wraps(service)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        unit = _current.get()
        if unit is None and not connection.in_atomic_block:
            return run_with_retries(lambda: _run_outermost(service, *args, **kwargs))
        return _run_joined(unit, service, *args, **kwargs)

    return run


@contextmanager
def savepoint() -> Iterator[None]:
    """A savepoint around a unit's handler (the idempotency wrapper's): a refusal inside rolls
    back to it, and the unit of work directly inside joins it instead of opening another."""
    unit = require_unit("a unit's savepoint")
    before = replace(unit)
    with transaction.atomic():
        unit.joinable_depth = len(connection.atomic_blocks)
        try:
            yield
        except BaseException:
            _adopt(unit, before)
            raise
        finally:
            unit.joinable_depth = None


def require_unit(piece: str) -> _Unit:
    """The unit of work a piece of a change runs in; a piece never opens a transaction."""
    unit = _current.get()
    assert unit is not None and connection.in_atomic_block, f"{piece} runs in a unit of work"
    return unit


def claim_lock(rank: int, what: str) -> None:
    """Row locks follow the order of ``wallet.locks``: never a row earlier in it than one this
    transaction holds, never a row after its audit chain head or its event streams."""
    unit = require_unit(f"locking a {what} row")
    assert rank >= unit.lock_rank, f"the {what} lock comes earlier in the lock order"
    assert unit.audit_chain is None and not unit.has_emitted, (
        f"the {what} lock comes before the audit chain head and the event streams"
    )
    unit.lock_rank = rank


def claim_audit_chain(chain: int) -> None:
    """One audit chain per transaction: two changes locking chain heads in opposite orders
    could deadlock, and the lock order has no place for a second head."""
    unit = require_unit("an audit append")
    assert unit.audit_chain in (None, chain), "a transaction appends to one audit chain"
    assert not unit.has_emitted, "the audit chain head comes before the event streams"
    unit.audit_chain = chain


def claim_events_emit() -> None:
    """One events emit per transaction: it locks every stream it writes in one statement, in
    user-id order; a second emit could lock streams out of that order."""
    unit = require_unit("an events emit")
    assert not unit.has_emitted, "a transaction emits its events once"
    unit.has_emitted = True
