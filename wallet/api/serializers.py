from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quickpe.business_day import business_day
from quickpe.formats import mask_email, timestamp
from quickpe.money import format_paise
from wallet import limits, representations
from wallet.api.fields import AmountField, Text
from wallet.models import Category, LedgerEntry, MoneyRequest, Transfer, User, Wallet


class UserSerializer(serializers.ModelSerializer):
    email_verified = serializers.BooleanField(
        read_only=True,
        help_text="Whether the owner followed the link mailed to `email`. Until then nobody "
        "finds this account by email, only by QuickPe ID.",
    )

    class Meta:
        model = User
        fields = [
            "id",
            "quickpe_id",
            "email",
            "email_verified",
            "first_name",
            "last_name",
            "is_staff",
            "date_joined",
        ]
        read_only_fields = ["id", "quickpe_id", "email", "is_staff", "date_joined"]


class EmailVerifySerializer(serializers.Serializer):
    token = Text(
        max_length=512, help_text="The `token` query parameter of the link that was mailed."
    )


class ProfileUpdateSerializer(serializers.Serializer):
    first_name = Text(max_length=150, min_length=1, required=False)
    last_name = Text(max_length=150, required=False, allow_blank=True)


class SignupSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = Text(max_length=128, trim_whitespace=False, write_only=True)
    first_name = Text(max_length=150, min_length=1)
    last_name = Text(max_length=150, allow_blank=True, required=False, default="")


class SigninSerializer(serializers.Serializer):
    email = Text(max_length=254)
    password = Text(max_length=128, trim_whitespace=False, write_only=True)


class RefreshSerializer(serializers.Serializer):
    refresh = Text(max_length=2048)


class PasswordChangeSerializer(serializers.Serializer):
    old_password = Text(max_length=128, trim_whitespace=False)
    new_password = Text(max_length=128, trim_whitespace=False)


class AuthResultSerializer(serializers.Serializer):
    user = UserSerializer()
    access = serializers.CharField()
    refresh = serializers.CharField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class UserSearchQuerySerializer(serializers.Serializer):
    search = serializers.CharField(
        min_length=3,
        max_length=100,
        error_messages={"min_length": "Type at least 3 characters."},
    )


class UserSearchResultSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="get_full_name")
    email_masked = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = ["quickpe_id", "name", "email_masked"]

    def get_email_masked(self, user: User) -> str:
        return mask_email(user.email)


# Money responses are built on every money request. Their declared fields are the OpenAPI
# schema; ``to_representation`` uses the hand-written shapes in ``wallet.representations``
# because DRF deep-copies the declared fields of every serializer instance it renders, a cost
# paid on every request (docs/performance.md). tests/test_api_shapes checks both give the
# same output.
class PartySerializer(serializers.Serializer):
    quickpe_id = serializers.CharField()
    name = serializers.CharField(source="get_full_name")

    def to_representation(self, instance):
        return representations.party(instance)


class WalletLimitsSerializer(serializers.Serializer):
    """The schema of ``Wallet.limits``: what the wallet may do now, as amounts."""

    min_per_transaction = AmountField()
    max_per_transaction = AmountField()
    max_balance = AmountField()
    daily_deposit = AmountField(help_text="Per Asia/Kolkata calendar day.")
    daily_deposit_remaining = AmountField(help_text="What today's deposits leave of it.")
    daily_outgoing = AmountField(help_text="Transfers and withdrawals, per calendar day.")
    daily_outgoing_remaining = AmountField()


class WalletSerializer(serializers.ModelSerializer):
    quickpe_id = serializers.CharField(source="user.quickpe_id")
    balance = AmountField()
    currency = serializers.SerializerMethodField()
    limits = serializers.SerializerMethodField()

    class Meta:
        model = Wallet
        fields = ["quickpe_id", "balance", "currency", "status", "limits", "updated_at"]

    def get_currency(self, wallet) -> str:
        return "INR"

    @extend_schema_field(WalletLimitsSerializer)
    def get_limits(self, wallet) -> dict:
        from django.conf import settings

        deposited, outgoing = limits.daily_totals(wallet, business_day())
        return {
            "min_per_transaction": format_paise(settings.QUICKPE_MIN_AMOUNT),
            "max_per_transaction": format_paise(settings.QUICKPE_MAX_PER_TRANSACTION),
            "max_balance": format_paise(settings.QUICKPE_MAX_BALANCE),
            "daily_deposit": format_paise(settings.QUICKPE_DAILY_DEPOSIT_LIMIT),
            "daily_deposit_remaining": format_paise(
                max(settings.QUICKPE_DAILY_DEPOSIT_LIMIT - deposited, 0)
            ),
            "daily_outgoing": format_paise(settings.QUICKPE_DAILY_OUTGOING_LIMIT),
            "daily_outgoing_remaining": format_paise(
                max(settings.QUICKPE_DAILY_OUTGOING_LIMIT - outgoing, 0)
            ),
        }


class TransactionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices)
    direction = serializers.ChoiceField(choices=LedgerEntry.Direction.choices)
    amount = AmountField()
    balance_after = AmountField()
    category = serializers.ChoiceField(choices=Category.choices)
    description = serializers.CharField()
    counterparty = PartySerializer(allow_null=True)
    transfer_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()

    def to_representation(self, entry):
        return representations.transaction_data(entry)

    def generic_representation(self, entry):
        """DRF's own rendering from the declared fields; tests compare it with the above."""
        return super().to_representation(entry)


class TransferSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reference = serializers.CharField()
    sender = PartySerializer()
    recipient = PartySerializer()
    amount = AmountField()
    note = serializers.CharField()
    category = serializers.ChoiceField(choices=Category.choices)
    status = serializers.ChoiceField(choices=Transfer.Status.choices)
    created_at = serializers.DateTimeField()

    def to_representation(self, transfer):
        return representations.transfer_data(transfer)

    def generic_representation(self, transfer):
        return super().to_representation(transfer)


class MovementRequestSerializer(serializers.Serializer):
    amount = AmountField()
    description = Text(max_length=255, required=False, allow_blank=True, default="")


class TransferRequestSerializer(serializers.Serializer):
    recipient = Text(max_length=254, help_text="QuickPe ID or email")
    amount = AmountField()
    note = Text(max_length=255, required=False, allow_blank=True, default="")
    category = serializers.ChoiceField(
        choices=Category.choices, required=False, default=Category.TRANSFER
    )


class MovementResultSerializer(serializers.Serializer):
    transaction = TransactionSerializer()
    balance = AmountField()


class TransferResultSerializer(MovementResultSerializer):
    transfer = TransferSerializer()


class MoneyRequestSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    requester = PartySerializer()
    payer = PartySerializer()
    amount = AmountField()
    note = serializers.CharField()
    status = serializers.ChoiceField(
        choices=MoneyRequest.Status.choices,
        help_text="A pending request past `expires_at` reads `expired` at once.",
    )
    transfer_id = serializers.IntegerField(allow_null=True, help_text="Set once paid.")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, money_request):
        return representations.money_request_data(money_request, now=timezone.now())


class MoneyRequestCreateSerializer(serializers.Serializer):
    payer = Text(max_length=254, help_text="QuickPe ID or email")
    amount = AmountField()
    note = Text(max_length=255, required=False, allow_blank=True, default="")


class MoneyRequestListQuerySerializer(serializers.Serializer):
    role = serializers.ChoiceField(
        choices=["incoming", "outgoing"],
        required=False,
        help_text="incoming: asked of you; outgoing: yours. Both when absent.",
    )
    status = serializers.ChoiceField(choices=MoneyRequest.Status.choices, required=False)


class MoneyRequestPayResultSerializer(serializers.Serializer):
    money_request = MoneyRequestSerializer()
    transfer = TransferSerializer()
    balance = AmountField()


class DeviceSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    device = serializers.CharField(help_text='Read from the user agent: "Chrome on Windows".')
    ip = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField()
    current = serializers.BooleanField(help_text="The session of the token making this call.")

    def to_representation(self, session):
        return {
            "id": session.pk,
            "device": session.device,
            "ip": session.ip,
            "user_agent": session.user_agent,
            "created_at": timestamp(session.created_at),
            "last_used_at": timestamp(session.last_used_at),
            "current": session.pk == self.context.get("current_session_id"),
        }
