"""The doorbell: after a commit, tell a user's WebSocket consumers that events are waiting.

Only a hint. Events live in PostgreSQL (``notifications.Event``); a doorbell may be lost (a
Redis restart or hang, a consumer that is reconnecting) and consumers catch up on the next
doorbell, on their once-a-second look at the stream (``notifications.stream_watch``), on
reconnect, or when a client sends ``resume``. So a failed ring is never raised.

A ring is what the channel layer's ``group_send`` does with the Redis pub/sub layer (see
CHANNEL_LAYERS): one PUBLISH of the layer's serialized message on the group's Redis channel.
It is sent here with redis-py's synchronous client, a commit's rings in one pipeline, because
the request runs in a WSGI worker: the async layer needed an event loop in a second thread,
which cost several times the CPU per transfer (docs/performance.md). The channel
name and the shard choice follow ``channels_redis.pubsub`` (pinned in requirements.txt);
tests/test_event_stream.py checks that a consumer subscribed through the layer hears it.
"""

import redis
from channels.layers import get_channel_layer
from channels_redis.utils import _consistent_hash, decode_hosts
from django.conf import settings
from django.db import transaction

from quickpe.redis import client_for, unless_broken


def group_for(user_id: int) -> str:
    return f"user.{user_id}"


def publish(messages: list[tuple[int, dict]]) -> None:
    """Send each ``(user_id, message)`` to that user's group now. Never raises, and never waits
    on a Redis that failed a moment ago (``quickpe.redis``): the ring is dropped instead."""
    layer = get_channel_layer()
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    prefix = config.get("prefix", "asgi")
    urls = [host["address"] for host in decode_hosts(config["hosts"])]
    pipelines: dict[int, redis.client.Pipeline] = {}
    for user_id, message in messages:
        channel = f"{prefix}__group__{group_for(user_id)}"
        shard = _consistent_hash(channel, len(urls))
        if shard not in pipelines:
            pipelines[shard] = client_for(urls[shard]).pipeline(transaction=False)
        pipelines[shard].publish(channel, layer.serialize(message))
    for shard, pipeline in pipelines.items():
        unless_broken(urls[shard], pipeline.execute)


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
