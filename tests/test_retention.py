"""Periodic clean-up jobs: events past retention and idempotency keys past their window."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Event
from notifications.tasks import events_prune
from tests.conftest import client_for, fund
from wallet.models import IdempotencyKey
from wallet.tasks import idempotency_keys_purge

pytestmark = pytest.mark.django_db


def test_events_older_than_retention_are_pruned_and_recent_ones_kept(alice, settings):
    settings.QUICKPE_EVENT_RETENTION_HOURS = 24
    fund(alice, 10_00)
    fund(alice, 20_00)
    old = Event.objects.filter(user=alice).order_by("seq")[:3]
    Event.objects.filter(pk__in=[event.pk for event in old]).update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    kept = Event.objects.count() - 3
    assert events_prune() == 3
    assert Event.objects.count() == kept
    assert events_prune() == 0  # idempotent


def test_expired_idempotency_keys_are_purged(alice):
    client = client_for(alice)
    for key in ("old", "new"):
        client.post(
            "/api/v1/wallet/deposits", {"amount": "1.00"}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))
    assert idempotency_keys_purge() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
