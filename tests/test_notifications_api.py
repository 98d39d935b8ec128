"""Notifications REST endpoints: own notifications only, unread filter and count, read, delete."""

import uuid

import pytest

from notifications.models import Notification
from tests.conftest import client_for, fund, snapshot

pytestmark = pytest.mark.django_db


def send(sender, recipient, amount="5.00"):
    response = client_for(sender).post(
        "/api/v1/transfers",
        {"recipient": recipient.quickpe_id, "amount": amount},
        format="json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert response.status_code == 201


def test_money_movements_create_the_right_notifications(alice, bob):
    fund(alice, 100_00)
    send(alice, bob, "12.50")
    kinds = {
        user.first_name: list(
            Notification.objects.filter(user=user).order_by("pk").values_list("kind", flat=True)
        )
        for user in (alice, bob)
    }
    assert kinds == {"Alice": ["deposit", "transfer_sent"], "Bob": ["transfer_received"]}
    received = Notification.objects.get(user=bob)
    assert received.title == "Alice Sharma sent you ₹12.50"


def test_list_unread_filter_count_read_and_read_all(alice, bob):
    fund(alice, 100_00)
    for _ in range(3):
        send(alice, bob)
    client = client_for(bob)
    listed = client.get("/api/v1/notifications").json()
    assert len(listed["results"]) == 3
    assert set(listed["results"][0]) == {
        "id",
        "kind",
        "title",
        "body",
        "data",
        "read_at",
        "created_at",
    }
    assert client.get("/api/v1/notifications/unread-count").json() == {"count": 3}
    first = listed["results"][0]["id"]
    read = client.post(f"/api/v1/notifications/{first}/read")
    assert read.status_code == 200 and read.json()["read_at"].endswith("Z")
    again = client.post(f"/api/v1/notifications/{first}/read")
    assert again.json()["read_at"] == read.json()["read_at"]  # reading twice changes nothing
    assert client.get("/api/v1/notifications/unread-count").json() == {"count": 2}
    unread = client.get("/api/v1/notifications?unread=true").json()["results"]
    assert first not in {item["id"] for item in unread} and len(unread) == 2
    assert len(client.get("/api/v1/notifications?unread=false").json()["results"]) == 1
    assert client.post("/api/v1/notifications/read-all").json() == {"updated": 2}
    assert client.get("/api/v1/notifications/unread-count").json() == {"count": 0}
    bad = client.get("/api/v1/notifications?unread=maybe")
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"


def test_delete_and_other_users_notifications_are_404(alice, bob):
    fund(alice, 100_00)
    send(alice, bob)
    mine = Notification.objects.get(user=bob)
    theirs = Notification.objects.filter(user=alice).first()
    client = client_for(bob)
    before = snapshot()
    for response in (
        client.post(f"/api/v1/notifications/{theirs.pk}/read"),
        client.delete(f"/api/v1/notifications/{theirs.pk}"),
        client.post("/api/v1/notifications/999999/read"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert snapshot() == before
    theirs.refresh_from_db()
    assert theirs.read_at is None
    assert client.delete(f"/api/v1/notifications/{mine.pk}").status_code == 204
    assert not Notification.objects.filter(pk=mine.pk).exists()
    alices = client_for(alice).get("/api/v1/notifications").json()["results"]
    assert theirs.pk in {item["id"] for item in alices}  # untouched by bob's attempts


def test_realtime_gives_the_websocket_url(alice, settings, api):
    settings.QUICKPE_WEBSOCKET_URL = "wss://pay.example.test/ws/events/"
    assert client_for(alice).get("/api/v1/realtime").json() == {
        "url": "wss://pay.example.test/ws/events/"
    }
    assert api.get("/api/v1/realtime").status_code == 401
    assert api.get("/api/v1/notifications").status_code == 401
