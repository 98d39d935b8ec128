"""Reads of the event stream, for the WebSocket consumer."""

import json

from django.db import connection
from django.db.models import Max, Min

from notifications.models import Event, EventStream
from quickpe import statements


def stream_position(*, user_id: int) -> int:
    """The seq of the user's last committed event (0 before the first)."""
    stream = EventStream.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first()
    return stream or 0


def streams_behind(*, sent: dict[int, int]) -> dict[int, int]:
    """Of the users in ``sent`` (user id: the last seq sent to them), those with events past
    it: their last committed seq, by user id. One query, however many users."""
    with connection.cursor() as cursor:
        cursor.execute(statements.STREAMS_BEHIND, [json.dumps(sent)])
        return dict(cursor.fetchall())


def events_after(*, user_id: int, seq: int, limit: int) -> list[Event]:
    return list(Event.objects.filter(user_id=user_id, seq__gt=seq).order_by("seq")[:limit])


def can_resume_after(*, user_id: int, seq: int) -> bool:
    """Whether every event after ``seq`` is still retained (none pruned, none from the future)."""
    if seq < 0:
        return False
    position = stream_position(user_id=user_id)
    if seq >= position:
        return seq == position
    retained = Event.objects.filter(user_id=user_id).aggregate(first=Min("seq"), last=Max("seq"))
    return retained["first"] is not None and retained["first"] <= seq + 1
