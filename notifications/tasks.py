from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from notifications.models import Event


@shared_task(name="notifications.events_prune")
def events_prune() -> int:
    """Delete events past the retention window (clients older than that get resync_required).
    Idempotent; runs on the beat schedule."""
    cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_EVENT_RETENTION_HOURS)
    deleted, _ = Event.objects.filter(created_at__lt=cutoff).delete()
    return deleted
