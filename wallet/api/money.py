"""Wallet API: balance, deposits, withdrawals, transfers and the caller's ledger."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from quickpe.money import format_paise
from quickpe.throttling import MoneyRateThrottle
from wallet import selectors
from wallet.api.filters import Ordering, TransactionFilter
from wallet.api.serializers import (
    MovementRequestSerializer,
    MovementResultSerializer,
    TransactionSerializer,
    TransferRequestSerializer,
    TransferResultSerializer,
    TransferSerializer,
    WalletSerializer,
)
from wallet.idempotency import idempotent
from wallet.models import Wallet
from wallet.services import money
from wallet.services.posting import Posting

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    # Printable ASCII; no space at either end, which HTTP servers strip from header values.
    {"type": "string", "pattern": r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$"},
    location=OpenApiParameter.HEADER,
    required=True,
    description="1-255 printable ASCII characters, scoped to you. Same key and body within "
    "24 h: the first response again with `Idempotent-Replayed: true`; a different body: 422 "
    "`idempotency_key_reused`; while the first is in flight: 409 `idempotency_key_in_use`.",
)
MONEY_ERRORS = (
    "Refusals change nothing: 400 `validation_error`, 403 `wallet_frozen`, 409 "
    "`insufficient_funds` or `limit_exceeded` (errors[0] names the limit and the remaining "
    "allowance), 429 `rate_limited` with Retry-After."
)


def _movement_result(movement: Posting) -> dict:
    result = {
        "transaction": TransactionSerializer(movement.entry).data,
        "balance": format_paise(movement.wallet.balance),
    }
    if movement.transfer is not None:
        result["transfer"] = TransferSerializer(movement.transfer).data
    return result


class WalletView(APIView):
    @extend_schema(responses={200: WalletSerializer}, tags=["wallet"])
    def get(self, request):
        wallet = Wallet.objects.select_related("user").get(user=request.user)
        return Response(WalletSerializer(wallet).data)


class MoneyMovementView(APIView):
    """A money-moving POST: rate-limited per user, idempotent by key."""

    throttle_classes = [MoneyRateThrottle]
    throttle_scope = ""
    request_serializer = MovementRequestSerializer
    problem_responses = {
        "403": "`wallet_frozen`",
        "409": "`insufficient_funds`, `limit_exceeded` (errors[0]: which limit, remaining), "
        "`idempotency_key_in_use`",
        "422": "`idempotency_key_reused`",
    }

    def post(self, request):
        def handler() -> Response:
            serializer = self.request_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            movement = self.perform(request, serializer.validated_data)
            return Response(_movement_result(movement), status=status.HTTP_201_CREATED)

        return idempotent(request, self, handler)

    def perform(self, request, data) -> Posting:
        raise NotImplementedError


def money_schema(request_serializer, result_serializer, tag: str, extra: str = ""):
    """The OpenAPI description every money-moving POST shares."""
    return extend_schema_view(
        post=extend_schema(
            request=request_serializer,
            responses={201: result_serializer},
            parameters=[IDEMPOTENCY_KEY],
            tags=[tag],
            description=MONEY_ERRORS + extra,
        )
    )


@money_schema(MovementRequestSerializer, MovementResultSerializer, "wallet")
class DepositView(MoneyMovementView):
    throttle_scope = "deposit"

    def perform(self, request, data):
        return money.deposit_create(user=request.user, request=request, **data)


@money_schema(MovementRequestSerializer, MovementResultSerializer, "wallet")
class WithdrawalView(MoneyMovementView):
    throttle_scope = "withdrawal"

    def perform(self, request, data):
        return money.withdrawal_create(user=request.user, request=request, **data)


@money_schema(
    TransferRequestSerializer,
    TransferResultSerializer,
    "transfers",
    " 404 `recipient_not_found`, 400 `self_transfer`.",
)
class TransferCreateView(MoneyMovementView):
    throttle_scope = "transfer"
    request_serializer = TransferRequestSerializer
    problem_responses = {
        **MoneyMovementView.problem_responses,
        "404": "`recipient_not_found`",
    }

    def perform(self, request, data):
        recipient = money.recipient_resolve(identifier=data.pop("recipient"))
        return money.transfer_create(
            sender=request.user, recipient=recipient, request=request, **data
        )


class TransferDetailView(generics.RetrieveAPIView):
    serializer_class = TransferSerializer

    def get_queryset(self):
        return selectors.transfers_for(user=self.request.user)

    @extend_schema(tags=["transfers"], description="Participants only; anyone else gets 404.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TransactionListView(generics.ListAPIView):
    serializer_class = TransactionSerializer
    filter_backends = [DjangoFilterBackend, Ordering]
    filterset_class = TransactionFilter
    ordering_fields = ["created_at", "amount"]
    ordering = ["-created_at"]

    def get_queryset(self):
        return selectors.transactions_for(user=self.request.user)

    @extend_schema(tags=["wallet"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class TransactionDetailView(generics.RetrieveAPIView):
    serializer_class = TransactionSerializer

    def get_queryset(self):
        return selectors.transactions_for(user=self.request.user)

    @extend_schema(tags=["wallet"])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
