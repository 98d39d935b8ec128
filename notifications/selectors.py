"""Reads of the event stream, for the WebSocket consumer."""

from django.db.models import Max, Min

from notifications.models import Event, EventStream


def stream_position(*, user_id: int) -> int:
    """The seq of the user's last committed event (0 before the first)."""
    stream = EventStream.objects.filter(user_id=user_id).values_list("last_seq", flat=True).first()
    return stream or 0


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
