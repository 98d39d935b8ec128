from celery import shared_task

from notifications.services import events_prune as prune


@shared_task(name="notifications.events_prune")
def events_prune() -> int:
    """Delete events past the retention window; runs on the beat schedule."""
    return prune()
