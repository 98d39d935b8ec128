"""Notifications and the per-user event stream (the outbox clients replay from).

Every event is a row written in the same transaction as the change it announces. Its ``seq``
comes from the user's ``EventStream`` row, incremented in that transaction: the row lock makes a
user's events commit in ``seq`` order with no gaps, so "everything after N" is always complete
(a global sequence would not be: ids are handed out before commit, not in commit order).
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class EventStream(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    last_seq = models.BigIntegerField(default=0)

    def __str__(self):
        return f"events of {self.user_id} up to {self.last_seq}"


class Event(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seq = models.BigIntegerField()
    type = models.CharField(max_length=40)
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "seq"], name="notifications_event_user_seq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="notifications_event_created")]

    def __str__(self):
        return f"{self.user_id}#{self.seq} {self.type}"


class Notification(models.Model):
    class Kind(models.TextChoices):
        TRANSFER_RECEIVED = "transfer_received"
        TRANSFER_SENT = "transfer_sent"
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        MONEY_REQUEST = "money_request"
        MONEY_REQUEST_PAID = "money_request_paid"
        MONEY_REQUEST_DECLINED = "money_request_declined"
        EXPORT_READY = "export_ready"
        SECURITY = "security"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    title = models.CharField(max_length=120)
    body = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="notifications_user_recent"),
            models.Index(
                fields=["user"],
                condition=models.Q(read_at__isnull=True),
                name="notifications_user_unread",
            ),
        ]

    def __str__(self):
        return f"{self.kind} for {self.user_id}"
