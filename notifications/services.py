"""Writing the per-user event stream (the outbox) and notifications.

Pieces of a change (``quickpe.unit_of_work``): event streams come last in the lock order
(``wallet.locks``), so a change calls ``audit_append`` before ``events_emit``, and emits the
events of all its users in one call (streams are locked in user-id order, in one statement).
"""

import json
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import entry_data
from notifications.models import Event, Notification
from quickpe import statements
from quickpe.db import insert_statement, keys_assign
from quickpe.formats import timestamp
from quickpe.logs import get_logger
from quickpe.realtime import ring_after_commit
from quickpe.text import fit
from quickpe.unit_of_work import claim_events_emit, require_unit, unit_of_work

_log = get_logger("quickpe.events")


def events_emit(
    events: dict[int, list[tuple[str, dict]]], *, audit: Iterable = ()
) -> dict[int, int]:
    """Append events to users' streams in the caller's transaction; return each user's last seq.

    ``events`` maps a user id to ``[(type, data), ...]`` in the order clients must see them;
    each entry of ``audit`` adds an ``audit:new`` event for its actor, last. A piece of a
    change, called once per unit of work: it locks every stream row it writes (until commit)
    in one statement, which is what keeps seq in commit order without deadlocks.
    """
    claim_events_emit()
    events = {user_id: list(items) for user_id, items in events.items()}
    for entry in audit:
        if entry.actor_id is not None:
            events.setdefault(entry.actor_id, []).append(
                ("audit:new", {"entry": entry_data(entry)})
            )
    user_ids = sorted(user_id for user_id, items in events.items() if items)
    if not user_ids:
        return {}
    rows = [
        {"user_id": user_id, "before_last": len(items) - 1 - offset, "type": kind, "data": data}
        for user_id, items in events.items()
        for offset, (kind, data) in enumerate(items)
    ]
    with connection.cursor() as cursor:
        cursor.execute(statements.EVENTS_EMIT, [json.dumps(rows), timezone.now()])
        last = dict(cursor.fetchall())
    ring_after_commit(last)
    # The request id (or task id) of whatever made these events joins them to it in the logs.
    transaction.on_commit(
        partial(
            _log.info,
            "events",
            streams={
                user_id: [last[user_id] - len(events[user_id]) + 1, last[user_id]]
                for user_id in user_ids
            },
        )
    )
    return last


def event_frame(event: Event) -> dict:
    """The contract's WebSocket frame for an event."""
    return {
        "id": event.seq,
        "type": event.type,
        "ts": timestamp(event.created_at),
        "data": event.data,
    }


def notification_data(notification: Notification) -> dict:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "title": notification.title,
        "body": notification.body,
        "data": notification.data,
        "read_at": timestamp(notification.read_at) if notification.read_at else None,
        "created_at": timestamp(notification.created_at),
    }


def unread_counts(user_ids: Iterable[int]) -> dict[int, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT user_id, count(*) FROM notifications_notification"
            " WHERE user_id = ANY(%s) AND read_at IS NULL GROUP BY user_id",
            [list(user_ids)],
        )
        counts = dict(cursor.fetchall())
    return {user_id: counts.get(user_id, 0) for user_id in user_ids}


def notifications_create(notifications: list[Notification]) -> list[tuple[int, tuple[str, dict]]]:
    """Insert notifications (caller's transaction); return the ``notification:new`` event of
    each, keyed by user, for the caller to pass to ``events_emit`` with its other events.
    Titles and bodies are composed from names and notes: they are fitted to their columns."""
    require_unit("writing notifications")
    for notification in notifications:
        notification.title = fit(Notification, "title", notification.title)
        notification.body = fit(Notification, "body", notification.body)
    insert, params = insert_statement(notifications)
    with connection.cursor() as cursor:
        cursor.execute(statements.NOTIFICATIONS_INSERT.format(insert=insert), params)
        rows = cursor.fetchall()
    keys_assign(notifications, [key for key, _ in rows])
    return [
        (
            notification.user_id,
            (
                "notification:new",
                {"notification": notification_data(notification), "unread_count": unread},
            ),
        )
        for notification, (_, unread) in zip(notifications, rows, strict=True)
    ]


@unit_of_work
def notification_mark_read(*, notification: Notification) -> Notification:
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


@unit_of_work
def notifications_mark_all_read(*, user) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


@unit_of_work
def notification_delete(*, notification: Notification) -> None:
    notification.delete()


def security_notification(*, user, title: str, body: str, data: dict | None = None):
    """A security notice (new device, password change) for the caller to emit: returns the
    ``notification:new`` event, keyed by user."""
    notification = Notification(
        user=user, kind=Notification.Kind.SECURITY, title=title, body=body, data=data or {}
    )
    [(user_id, event)] = notifications_create([notification])
    return user_id, event


@unit_of_work
def events_prune() -> int:
    """Delete events past QUICKPE_EVENT_RETENTION_HOURS (a client resuming from before them is
    told ``resync_required``). Idempotent. Returns how many were deleted."""
    cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_EVENT_RETENTION_HOURS)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
