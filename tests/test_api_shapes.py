"""Hand-written money representations equal DRF's rendering of the declared (schema) fields."""

import pytest
from django.utils import timezone

from audit.api import AuditEntrySerializer
from audit.models import AuditEntry
from notifications.api import NotificationSerializer
from notifications.models import Notification
from tests.conftest import client_for, fund
from wallet.api.serializers import TransactionSerializer, TransferSerializer
from wallet.models import LedgerEntry, Transfer

pytestmark = pytest.mark.django_db


def test_transaction_and_transfer_shapes_match_the_schema_fields(alice, bob):
    fund(alice, 1234_56)
    response = client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "99.05", "note": "chai ☕", "category": "food"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="shape-1",
    )
    assert response.status_code == 201
    entries = list(LedgerEntry.objects.select_related("counterparty"))
    assert {entry.kind for entry in entries} == {"deposit", "transfer_out", "transfer_in"}
    for entry in entries:  # with and without a counterparty and a transfer
        serializer = TransactionSerializer(entry)
        assert serializer.data == serializer.generic_representation(entry)
        assert list(serializer.data) == list(serializer.fields)
    transfer = Transfer.objects.get()
    serializer = TransferSerializer(transfer)
    assert serializer.data == serializer.generic_representation(transfer)
    assert list(serializer.data) == list(serializer.fields)
    assert response.json()["transfer"] == serializer.data


def test_audit_entry_and_notification_shapes_match_the_schema_fields(alice, bob):
    fund(alice, 10_00)
    client_for(alice).post(
        "/api/v1/transfers",
        {"recipient": bob.quickpe_id, "amount": "1.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="shape-2",
    )
    Notification.objects.filter(user=alice).update(read_at=timezone.now())  # read and unread
    cases = [(AuditEntrySerializer, entry) for entry in AuditEntry.objects.all()]
    cases += [(NotificationSerializer, notice) for notice in Notification.objects.all()]
    assert {serializer for serializer, _ in cases} == {AuditEntrySerializer, NotificationSerializer}
    for serializer_class, instance in cases:
        serializer = serializer_class(instance)
        assert serializer.data == serializer.generic_representation(instance)
        assert list(serializer.data) == list(serializer.fields)
