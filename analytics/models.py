"""Exports: a statement or audit trail file a user asked for, built by a Celery worker."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from wallet.models import Category, LedgerEntry, User, Wallet


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


class _Figure(models.Model):
    """Ledger lines summed: their total amount and how many they are. Rows exist only while
    they hold a line (a figure whose lines all went is deleted, never left at zero)."""

    amount = models.BigIntegerField()
    lines = models.IntegerField()

    class Meta:
        abstract = True
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0, lines__gt=0),
                name="%(app_label)s_%(class)s_positive",
            ),
        ]


class DailyFigure(_Figure):
    """One wallet's ledger lines of one business day (Asia/Kolkata) that share kind, direction
    and category, summed: what the analytics read for whole days instead of every line (a
    year of a million-line wallet is a few thousand of these).

    Kept by the database, not by Python: statement-level triggers on the ledger follow every
    insert (and, should one ever happen, update or delete) in the writing transaction
    (migration 0004), so a figure can never disagree with the ledger, whichever code path,
    pgbench run or bulk load wrote the lines."""

    # No index of its own: the unique constraint's index leads with the wallet.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+", db_index=False)
    day = models.DateField()
    kind = models.CharField(max_length=20, choices=LedgerEntry.Kind.choices)
    direction = models.CharField(max_length=6, choices=LedgerEntry.Direction.choices)
    category = models.CharField(max_length=20, choices=Category.choices)

    class Meta:
        constraints = [
            *_Figure.Meta.constraints,
            # The trigger's ON CONFLICT target, and how the analytics find a wallet's days.
            models.UniqueConstraint(
                fields=["wallet", "day", "kind", "direction", "category"],
                name="analytics_dailyfigure_one_per_group",
            ),
        ]

    def __str__(self):
        return f"wallet {self.wallet_id} {self.day} {self.kind}"


class CounterpartyFigure(_Figure):
    """Money one wallet moved with one counterparty (transfers sent and received) in one
    business month, summed, for the top counterparties. Monthly rather than daily: a busy
    wallet deals with hundreds of people a day, so a year of daily rows per counterparty would
    be nearly as many as its lines. Kept by the same triggers as DailyFigure."""

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="+", db_index=False)
    month = models.DateField(help_text="The first day of the business month.")
    # Users are deactivated, never deleted: no index for the foreign key's delete checks.
    counterparty = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="+", db_index=False
    )

    class Meta:
        constraints = [
            *_Figure.Meta.constraints,
            models.UniqueConstraint(
                fields=["wallet", "month", "counterparty"],
                name="analytics_counterpartyfigure_one_per_group",
            ),
        ]

    def __str__(self):
        return f"wallet {self.wallet_id} {self.month:%Y-%m} with {self.counterparty_id}"


# What customers may ask for and see through the API (the contract's `kind`).
CUSTOMER_KINDS = [Export.Kind.STATEMENT, Export.Kind.AUDIT]
