"""Database helpers shared by the services."""

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connection
from psycopg import errors as pg_errors

logger = logging.getLogger(__name__)
T = TypeVar("T")
M = TypeVar("M")

_RETRYABLE = (pg_errors.SerializationFailure, pg_errors.DeadlockDetected)


def is_retryable(error: OperationalError) -> bool:
    return isinstance(error.__cause__, _RETRYABLE)


def run_with_retries(work: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``work`` (which opens its own outermost transaction) again after a deadlock or a
    serialization failure, so clients never see one. Backs off briefly with jitter so the
    transactions that collided do not collide again in lockstep."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except OperationalError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
            logger.warning(
                "retrying after %s (attempt %d)", type(error.__cause__).__name__, attempt
            )
            time.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 - jitter, not security
    raise AssertionError("unreachable")


def fetch_models(model: type[M], sql: str, params: list) -> list[M]:
    """Run hand-written SQL and build model instances the way Django's ORM does (``from_db``).

    For the money hot path only: on this machine compiling an ORM query costs ~300 us of CPU,
    several times the query itself, and a transfer runs a dozen of them. SELECT ``*`` so every
    field is loaded. Values are used as the driver returns them (no field converters), so use it
    only for models without such fields (no JSONField).
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        columns = [column.name for column in cursor.description]
        rows = cursor.fetchall()
    # from_db expects the model's field order; ``SELECT *`` gives the table's, which differs
    # (migrations append columns). Column names equal attribute names (``<fk>_id`` on both).
    attnames = [field.attname for field in model._meta.concrete_fields]
    positions = [columns.index(name) for name in attnames]
    return [
        model.from_db(connection.alias, attnames, [row[index] for index in positions])
        for row in rows
    ]
