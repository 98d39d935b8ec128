"""Lost doorbells: once a second, each daphne process reads the stream position of every user
with a socket open in it, in one query, and catches up each socket that is behind.

A doorbell (``quickpe.realtime``) is only a hint, and it is lost when Redis is down or hung as a
change commits (the web worker's publish fails, or is skipped while its breaker is open), or
while the layer's subscription reconnects. Nothing else would wake a quiet socket: its client
would show a stale balance until the user's next event. A socket found behind is caught up as a
doorbell would (``EventStreamConsumer.catch_up``: under its send lock, in order, without
duplicates), so a doorbell still on its way then finds nothing left to send. The look is one
query for all of the process's sockets (``quickpe.statements.STREAMS_BEHIND``), a lookup by
primary key per user, which returns only the users who are behind; what it costs per idle
socket is in docs/performance.md (``python -m bench.stream_watch``).
"""

import asyncio

from channels.db import database_sync_to_async
from django.db import DatabaseError

from notifications import selectors
from quickpe.logs import get_logger

INTERVAL_SECONDS = 1.0
logger = get_logger("quickpe.websocket")


class _Watch:
    """The open sockets of one event loop (daphne has one), and the task that looks at them."""

    def __init__(self):
        self.consumers: set = set()

    async def run(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self.consumers:
                await asyncio.sleep(INTERVAL_SECONDS)
                await self.look()
        finally:
            # With no socket left the task ends; the next socket starts another. No await
            # between the emptiness check and this, so no socket can join in between.
            del _watches[loop]

    async def look(self) -> None:
        consumers = list(self.consumers)
        sent: dict[int, int] = {}
        for consumer in consumers:  # of a user's sockets, the one furthest behind counts
            user_id = consumer.user.pk
            if consumer.sent < sent.get(user_id, consumer.sent + 1):
                sent[user_id] = consumer.sent
        try:
            positions = await database_sync_to_async(selectors.streams_behind)(sent=sent)
        except DatabaseError as error:  # PostgreSQL away: the next look tries again
            logger.warning("websocket.catch_up_skipped", error=type(error).__name__)
            return
        if not positions:
            return
        behind = [
            consumer for consumer in consumers if positions.get(consumer.user.pk, 0) > consumer.sent
        ]
        outcomes = await asyncio.gather(
            *(consumer.catch_up() for consumer in behind), return_exceptions=True
        )
        # One socket's failure (its reads, its send) must not end the look for all the others.
        for consumer, outcome in zip(behind, outcomes, strict=True):
            if isinstance(outcome, Exception):
                logger.warning(
                    "websocket.catch_up_failed", user=consumer.user.pk, error=type(outcome).__name__
                )


# One watch per running event loop, removed when its last socket closes.
_watches: dict[asyncio.AbstractEventLoop, _Watch] = {}
_tasks: set[asyncio.Task] = set()  # the loop keeps only a weak reference to a task


def follow(consumer) -> None:
    """Look at ``consumer`` (it has sent hello: ``consumer.sent`` is its position) until
    ``unfollow``."""
    loop = asyncio.get_running_loop()
    if loop not in _watches:
        watch = _watches[loop] = _Watch()
        task = loop.create_task(watch.run(loop))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
    _watches[loop].consumers.add(consumer)


def unfollow(consumer) -> None:
    watch = _watches.get(asyncio.get_running_loop())
    if watch is not None:
        watch.consumers.discard(consumer)
