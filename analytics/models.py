"""Exports: a statement or audit trail file a user asked for, built by a Celery worker."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Export(models.Model):
    class Kind(models.TextChoices):
        STATEMENT = "statement"
        AUDIT = "audit"  # the customer's own audit trail
        # Every user's entries: compliance staff ask for it in the admin, never through the API.
        AUDIT_LOG = "audit_log", "Audit log (all users)"

    class Format(models.TextChoices):
        PDF = "pdf"
        CSV = "csv"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    format = models.CharField(max_length=4, choices=Format.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    # The period as instants: from inclusive, to exclusive (a date covers its whole
    # Asia/Kolkata day, as in /transactions).
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    progress = models.PositiveSmallIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    # Storage name in the "exports" storage, set only when the build is done.
    file = models.CharField(max_length=255, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # Each claim by a worker increments it; only the holder of the latest attempt may report
    # progress or finish, so a stale worker's file is thrown away instead of kept.
    attempt = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at"], name="analytics_export_user_recent"),
            models.Index(fields=["created_at"], name="analytics_export_created"),
            models.Index(
                fields=["heartbeat_at"],
                condition=models.Q(status__in=["queued", "running"]),
                name="analytics_export_unfinished",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__lte=100), name="analytics_export_progress_max_100"
            ),
            models.CheckConstraint(
                condition=~models.Q(status="done") | ~models.Q(file=""),
                name="analytics_export_done_has_file",
            ),
            models.CheckConstraint(
                condition=models.Q(period_start__lt=models.F("period_end")),
                name="analytics_export_period_ordered",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.format} #{self.pk}"


# What customers may ask for and see through the API (the contract's `kind`).
CUSTOMER_KINDS = [Export.Kind.STATEMENT, Export.Kind.AUDIT]
