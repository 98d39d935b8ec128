"""Users, wallets and the ledger. Amounts are integer paise; the database enforces the rules
that must never break (non-negative balances, positive amounts, unique references, an
append-only ledger) even if a bug slipped past the services."""

import re

import pgtrigger
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Collate, Concat, Lower, Upper
from django.utils import timezone

from quickpe.db import fetch_models

# One query on every API request: the user, only while the token's device session is active.
_USER_IN_ACTIVE_SESSION = """
    SELECT u.* FROM wallet_user u
    WHERE u.id = %s AND EXISTS (
        SELECT 1 FROM wallet_devicesession s
        WHERE s.id = %s AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()
    )
"""

QUICKPE_ID = re.compile(r"QP[0-9]{8}")
# What a staff search compares a name or an email with (``UserManager.matching``), in capitals
# so that any case matches. The same expressions are indexed (``User.Meta.indexes``). In the
# "C" collation (byte order) because PostgreSQL reads a B-tree for ``LIKE 'PRIYA%'`` only when
# it sorts that way (or has the text_pattern_ops operator class, which Django can give an
# expression only through django.contrib.postgres, whose connection hook we do not want).
_SEARCHED = {
    "full_name_upper": Collate(Upper(Concat("first_name", models.Value(" "), "last_name")), "C"),
    "last_name_upper": Collate(Upper("last_name"), "C"),
    "email_upper": Collate(Upper("email"), "C"),
}
MIN_SEARCH_LENGTH = 2


class UserManager(BaseUserManager):
    def create_user(self, email, password=None, **fields):
        from wallet.services.users import user_create  # the one place users are made

        return user_create(email=email, password=password, **fields)

    def create_superuser(self, email, password=None, **fields):
        return self.create_user(email, password, is_staff=True, is_superuser=True, **fields)

    def in_active_session(self, *, user_id: int, session_id: int) -> "User | None":
        """The user if device session ``session_id`` is theirs and active: whom an access token
        speaks for (``quickpe.authentication``, which also checks ``is_active``)."""
        found = fetch_models(self.model, _USER_IN_ACTIVE_SESSION, [user_id, session_id])
        return found[0] if found else None

    def matching(self, term: str) -> models.QuerySet:
        """The users a staff search for ``term`` finds: the one with that QuickPe ID, or those
        whose first name, last name, full name ("Priya Sh") or email starts with it, in any
        case (at least ``MIN_SEARCH_LENGTH`` characters). Each is the start of an indexed
        expression, a range of a B-tree, so a search never reads the whole table; a match
        inside a word ("riya") would need a trigram index (docs/admin-and-dashboard.md)."""
        term = " ".join(term.split())
        if QUICKPE_ID.fullmatch(term.upper()):
            return self.filter(quickpe_id=term.upper())
        if len(term) < MIN_SEARCH_LENGTH:
            return self.none()
        start = term.upper()
        return self.alias(**_SEARCHED).filter(
            models.Q(full_name_upper__startswith=start)
            | models.Q(last_name_upper__startswith=start)
            | models.Q(email_upper__startswith=start)
        )


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(max_length=254, unique=True)
    # Whether the owner followed the link mailed to ``email`` (wallet.services.emails); until
    # then nobody finds the account by its email, only by its QuickPe ID. A changed email is
    # unverified again.
    email_verified = models.BooleanField(default=False)
    email_verified_at = models.DateTimeField(null=True, blank=True)
    quickpe_id = models.CharField(max_length=10, unique=True, editable=False)
    first_name = models.CharField(max_length=150)
    last_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["first_name", "last_name"]

    class Meta:
        permissions = [
            ("deactivate_user", "Can deactivate and reactivate users"),
            ("send_password_reset", "Can send a password reset link"),
        ]
        indexes = [
            # The admin's "staff" and "inactive" filters pick a few rows of a large table.
            models.Index(
                fields=["id"], condition=models.Q(is_staff=True), name="wallet_user_staff"
            ),
            models.Index(
                fields=["id"], condition=models.Q(is_active=False), name="wallet_user_inactive"
            ),
            # The admin's "email verified: no" filter, once most accounts are verified.
            models.Index(
                fields=["id"],
                condition=models.Q(email_verified=False),
                name="wallet_user_unverified",
            ),
            # The admin's search by the start of a name or an email (UserManager.matching):
            # a LIKE 'PRIYA%' is a range scan of these.
            models.Index(_SEARCHED["full_name_upper"], name="wallet_user_full_name_upper"),
            models.Index(_SEARCHED["last_name_upper"], name="wallet_user_last_name_upper"),
            models.Index(_SEARCHED["email_upper"], name="wallet_user_email_upper"),
        ]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="wallet_user_email_ci_unique"),
            models.CheckConstraint(
                condition=models.Q(quickpe_id__regex=r"^QP[0-9]{8}$"),
                name="wallet_user_quickpe_id_format",
            ),
        ]

    def __str__(self):
        return f"{self.quickpe_id} {self.get_full_name()}"

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self) -> str:
        return self.first_name

    def has_active_session(self, session_id: int | None) -> bool:
        """Whether device session ``session_id`` is this user's and active: a dashboard browser
        or a WebSocket signed in with it may go on (``quickpe.authentication``)."""
        return (
            session_id is not None and self.device_sessions.active().filter(pk=session_id).exists()
        )


class Category(models.TextChoices):
    TRANSFER = "transfer"
    FOOD = "food"
    TRANSPORT = "transport"
    SHOPPING = "shopping"
    BILLS = "bills"
    ENTERTAINMENT = "entertainment"
    HEALTH = "health"
    OTHER = "other"


class Wallet(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        FROZEN = "frozen"

    user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="wallet")
    balance = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    # Running totals for the daily limits, for the Asia/Kolkata day in ``limits_day``. Kept on
    # the locked wallet row so a limit check is O(1) and holds under concurrency; tests check
    # them against sums over the ledger.
    limits_day = models.DateField(null=True, blank=True)
    deposited_on_day = models.BigIntegerField(default=0)
    outgoing_on_day = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("freeze_wallet", "Can freeze and unfreeze wallets")]
        indexes = [
            models.Index(
                fields=["id"], condition=models.Q(status="frozen"), name="wallet_wallet_frozen"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(balance__gte=0), name="wallet_wallet_balance_non_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(deposited_on_day__gte=0, outgoing_on_day__gte=0),
                name="wallet_wallet_daily_totals_non_negative",
            ),
        ]
        triggers = [pgtrigger.Protect(name="wallet_wallet_no_delete", operation=pgtrigger.Delete)]

    def __str__(self):
        return f"Wallet of {self.user.quickpe_id}"

    @property
    def is_frozen(self) -> bool:
        return self.status == self.Status.FROZEN


class Transfer(models.Model):
    class Status(models.TextChoices):
        COMPLETED = "completed"
        REVERSED = "reversed"

    reference = models.CharField(max_length=20, unique=True)
    sender = models.ForeignKey(User, on_delete=models.PROTECT, related_name="transfers_sent")
    recipient = models.ForeignKey(User, on_delete=models.PROTECT, related_name="transfers_received")
    amount = models.BigIntegerField()
    note = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.TRANSFER)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETED)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        permissions = [("reverse_transfer", "Can reverse a transfer")]
        indexes = [
            models.Index(
                fields=["id"],
                condition=models.Q(status="reversed"),
                name="wallet_transfer_reversed",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="wallet_transfer_amount_positive"
            ),
            models.CheckConstraint(
                condition=~models.Q(sender=models.F("recipient")),
                name="wallet_transfer_not_to_self",
            ),
        ]
        triggers = [pgtrigger.Protect(name="wallet_transfer_no_delete", operation=pgtrigger.Delete)]

    def __str__(self):
        return self.reference


class LedgerEntry(models.Model):
    """One line of one wallet's ledger. Append-only: corrections are new lines (reversals)."""

    class Kind(models.TextChoices):
        DEPOSIT = "deposit"
        WITHDRAWAL = "withdrawal"
        TRANSFER_IN = "transfer_in"
        TRANSFER_OUT = "transfer_out"
        REVERSAL = "reversal"

    class Direction(models.TextChoices):
        CREDIT = "credit"
        DEBIT = "debit"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.TRANSFER)
    description = models.CharField(max_length=255, blank=True)
    counterparty = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    transfer = models.ForeignKey(
        Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    reference = models.CharField(max_length=20, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(
                fields=["wallet", "-created_at", "-id"], name="wallet_ledger_wallet_recent"
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="wallet_ledgerentry_amount_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(balance_after__gte=0),
                name="wallet_ledgerentry_balance_after_non_negative",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(kind__in=["deposit", "transfer_in"], direction="credit")
                    | models.Q(kind__in=["withdrawal", "transfer_out"], direction="debit")
                    | models.Q(kind="reversal")
                ),
                name="wallet_ledgerentry_direction_matches_kind",
            ),
            # A transfer is reversed at most once: one reversal debit and one reversal credit,
            # whatever a racing second reversal might try.
            models.UniqueConstraint(
                fields=["transfer", "direction"],
                condition=models.Q(kind="reversal"),
                name="wallet_ledgerentry_one_reversal_per_transfer",
            ),
        ]
        triggers = [
            pgtrigger.Protect(
                name="wallet_ledgerentry_append_only", operation=pgtrigger.Update | pgtrigger.Delete
            )
        ]

    def __str__(self):
        return self.reference

    @property
    def signed_amount(self) -> int:
        return self.amount if self.direction == self.Direction.CREDIT else -self.amount


class IdempotencyKey(models.Model):
    """A money-moving request's key and the response it got, committed with its effect."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    # DjangoJSONEncoder: the response data holds lazy translation strings in some errors.
    response_body = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="wallet_idempotencykey_unique"),
        ]

    def __str__(self):
        return f"{self.user_id}:{self.key}"


class MoneyRequest(models.Model):
    """One user asking another to pay them. Only a pending request changes state; paying it is
    a transfer recorded here, in the same transaction."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        DECLINED = "declined"
        CANCELLED = "cancelled"
        EXPIRED = "expired"

    requester = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="money_requests_sent"
    )
    payer = models.ForeignKey(
        User, on_delete=models.PROTECT, related_name="money_requests_received"
    )
    amount = models.BigIntegerField()
    note = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="money_request"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["payer", "-created_at"], name="wallet_moneyrequest_payer"),
            models.Index(fields=["requester", "-created_at"], name="wallet_moneyrequest_requester"),
            # The expiry job's scan: only pending rows, oldest deadline first.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(status="pending"),
                name="wallet_moneyrequest_pending",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0), name="wallet_moneyrequest_amount_positive"
            ),
            models.CheckConstraint(
                condition=~models.Q(requester=models.F("payer")),
                name="wallet_moneyrequest_not_to_self",
            ),
            models.CheckConstraint(
                condition=models.Q(status="paid", transfer__isnull=False)
                | (~models.Q(status="paid") & models.Q(transfer__isnull=True)),
                name="wallet_moneyrequest_paid_has_transfer",
            ),
            models.CheckConstraint(
                condition=models.Q(status="pending", resolved_at__isnull=True)
                | (~models.Q(status="pending") & models.Q(resolved_at__isnull=False)),
                name="wallet_moneyrequest_resolved_unless_pending",
            ),
        ]

    def __str__(self):
        return f"Request {self.pk} of {self.requester_id} to {self.payer_id}"

    def current_status(self, now) -> str:
        """What the user sees: a pending request past its deadline is expired even before the
        periodic job has written it down."""
        if self.status == self.Status.PENDING and self.expires_at <= now:
            return self.Status.EXPIRED
        return self.status


class DeviceSessionQuerySet(models.QuerySet):
    def active(self, now=None):
        """Neither revoked nor expired: the sessions whose tokens and browsers are let in."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now or timezone.now())


class DeviceSession(models.Model):
    """A signed-in device. Its refresh token is the one whose id is ``refresh_jti`` (it changes
    on every rotation); revoking the session stops that token, and the access tokens carrying
    its id, at once."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="device_sessions")
    device = models.CharField(max_length=120)
    # What "a device not seen before" compares: browser and OS families, not versions, so an
    # update does not look like a new device.
    device_key = models.CharField(max_length=64)
    user_agent = models.CharField(max_length=512, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    refresh_jti = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = DeviceSessionQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(
                fields=["user", "created_at"],
                condition=models.Q(revoked_at__isnull=True),
                name="wallet_devicesession_active",
            ),
            models.Index(fields=["user", "device_key"], name="wallet_devicesession_device"),
        ]

    def __str__(self):
        return f"{self.device} ({self.user_id})"
