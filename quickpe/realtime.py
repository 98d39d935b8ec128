"""The doorbell: after a commit, tell a user's WebSocket consumers that events are waiting.

Only a hint. Events live in PostgreSQL (``notifications.Event``); a doorbell may be lost (a
Redis restart, a consumer that is reconnecting) and consumers catch up on the next doorbell, on
reconnect, or when a client sends ``resume``. So a failed ring is logged, never raised.

A ring is what the channel layer's ``group_send`` does with the Redis pub/sub layer (see
CHANNEL_LAYERS): one PUBLISH of the layer's serialized message on the group's Redis channel.
It is sent here with redis-py's synchronous client, a commit's rings in one pipeline, because
the request runs in a WSGI worker: the async layer needed an event loop in a second thread,
which cost several times the CPU per transfer (docs/performance.md). The channel
name and the shard choice follow ``channels_redis.pubsub`` (pinned in requirements.txt);
tests/test_event_stream.py checks that a consumer subscribed through the layer hears it.
"""

import logging
import os
import threading

import redis
from channels.layers import get_channel_layer
from channels_redis.utils import _consistent_hash, decode_hosts
from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# A doorbell must never hold a request up for long: a Redis that does not answer costs at
# most this per commit, and the ring is dropped (clients catch up).
_TIMEOUT_SECONDS = 0.25

_clients: tuple[int, list[redis.Redis]] | None = None
_clients_lock = threading.Lock()


def group_for(user_id: int) -> str:
    return f"user.{user_id}"


def _redis_clients() -> list[redis.Redis]:
    """One client per layer host, made in this process (a forked worker makes its own)."""
    global _clients
    with _clients_lock:
        if _clients is None or _clients[0] != os.getpid():
            hosts = decode_hosts(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"])
            _clients = (
                os.getpid(),
                [
                    redis.Redis.from_url(
                        host["address"],
                        socket_timeout=_TIMEOUT_SECONDS,
                        socket_connect_timeout=_TIMEOUT_SECONDS,
                    )
                    for host in hosts
                ],
            )
        return _clients[1]


def publish(messages: list[tuple[int, dict]]) -> None:
    """Send each ``(user_id, message)`` to that user's group now; log a failure, never raise."""
    layer = get_channel_layer()
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"].get("prefix", "asgi")
    clients = _redis_clients()
    pipelines: dict[int, redis.client.Pipeline] = {}
    for user_id, message in messages:
        channel = f"{prefix}__group__{group_for(user_id)}"
        shard = _consistent_hash(channel, len(clients))
        if shard not in pipelines:
            pipelines[shard] = clients[shard].pipeline(transaction=False)
        pipelines[shard].publish(channel, layer.serialize(message))
    try:
        for pipeline in pipelines.values():
            pipeline.execute()
    except (RedisError, OSError) as error:
        logger.warning("doorbell not sent (%s); clients catch up later", type(error).__name__)


def ring(user_seqs: dict[int, int]) -> None:
    """Ring each user's group: their events up to ``seq`` are committed."""
    publish([(user_id, {"type": "events.ready", "seq": seq}) for user_id, seq in user_seqs.items()])


def ring_after_commit(user_seqs: dict[int, int]) -> None:
    """Ring each user's group once the current transaction commits (never if it rolls back)."""
    transaction.on_commit(lambda: ring(user_seqs))


def sessions_revoked_after_commit(user_id: int, session_ids: list[int]) -> None:
    """Once the revocation commits, close the user's open sockets signed in with those sessions.

    Best effort like the doorbell: a socket that misses it still closes when its access
    token expires, and can never reconnect with that token."""
    if session_ids:
        message = {"type": "sessions.revoked", "sessions": sorted(session_ids)}
        transaction.on_commit(lambda: publish([(user_id, message)]))
