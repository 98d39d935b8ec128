"""The doorbell: after a commit, tell a user's WebSocket consumers that events are waiting.

Only a hint. Events live in PostgreSQL (``notifications.Event``); the channel layer may drop a
message (capacity, a Redis restart) and consumers catch up on the next doorbell, on reconnect,
or when a client sends ``resume``. So a failed ring is logged, never raised.

Rings are sent from one event loop per process, in a background thread: calling the async
channel layer from sync code with ``async_to_sync`` builds a loop and a Redis connection every
time (~3 ms of CPU per transfer here); this way the request only schedules the send.
"""

import asyncio
import logging
import os
import threading
from concurrent.futures import Future

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None
_loop_lock = threading.Lock()


def group_for(user_id: int) -> str:
    return f"user.{user_id}"


def _doorbell_loop() -> asyncio.AbstractEventLoop:
    """This process's doorbell loop, started on first use (and again in a forked child)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid():
            _loop = asyncio.new_event_loop()
            _loop_pid = os.getpid()
            threading.Thread(target=_loop.run_forever, name="doorbell", daemon=True).start()
        return _loop


async def _send(messages: list[tuple[int, dict]]) -> None:
    layer = get_channel_layer()
    for user_id, message in messages:
        await layer.group_send(group_for(user_id), message)


def _log_failure(future: Future) -> None:
    error = future.exception()
    if isinstance(error, RedisError | OSError | ChannelFull):
        logger.warning("doorbell not sent (%s); clients catch up later", type(error).__name__)
    elif error is not None:
        logger.error("doorbell failed", exc_info=error)


def _schedule(messages: list[tuple[int, dict]]) -> Future:
    future = asyncio.run_coroutine_threadsafe(_send(messages), _doorbell_loop())
    future.add_done_callback(_log_failure)
    return future


def ring(user_seqs: dict[int, int]) -> Future:
    """Schedule the rings on the doorbell loop; returns the future (tests may wait on it)."""
    return _schedule(
        [(user_id, {"type": "events.ready", "seq": seq}) for user_id, seq in user_seqs.items()]
    )


def ring_after_commit(user_seqs: dict[int, int]) -> None:
    """Ring each user's group once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(lambda: ring(user_seqs))


def sessions_revoked_after_commit(user_id: int, session_ids: list[int]) -> None:
    """Once the revocation commits, close the user's open sockets signed in with those sessions.

    Best effort like the doorbell: a socket that misses it still closes when its access
    token expires, and can never reconnect with that token."""
    if session_ids:
        message = {"type": "sessions.revoked", "sessions": sorted(session_ids)}
        transaction.on_commit(lambda: _schedule([(user_id, message)]))
