from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from wallet.models import IdempotencyKey


@shared_task(name="wallet.idempotency_keys_purge")
def idempotency_keys_purge() -> int:
    """Delete idempotency keys past their window (an expired key starts afresh anyway)."""
    cutoff = timezone.now() - timedelta(hours=settings.QUICKPE_IDEMPOTENCY_TTL_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
