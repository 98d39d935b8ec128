"""Database helpers shared by the services."""

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError
from psycopg import errors as pg_errors

logger = logging.getLogger(__name__)
T = TypeVar("T")

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
