"""Money requests API: ask, list, pay, decline, cancel."""

from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from quickpe.money import format_paise
from quickpe.throttling import MoneyRateThrottle
from wallet import selectors
from wallet.api.money import IDEMPOTENCY_KEY, MONEY_ERRORS
from wallet.api.serializers import (
    MoneyRequestCreateSerializer,
    MoneyRequestListQuerySerializer,
    MoneyRequestPayResultSerializer,
    MoneyRequestSerializer,
    TransferSerializer,
)
from wallet.idempotency import idempotent
from wallet.services import requests as services

STATE_ERRORS = {
    "403": "`permission_denied`: you take part but it is the other party's move",
    "404": "`not_found`: no such request among yours",
    "409": "`invalid_state`: the request is no longer pending (paid, declined, cancelled or "
    "expired)",
}


class MoneyRequestListCreateView(generics.ListAPIView):
    serializer_class = MoneyRequestSerializer
    throttle_scope = "money_request"
    problem_responses = {
        "403": "`wallet_frozen` (yours)",
        "404": "`payer_not_found`",
        "409": "`limit_exceeded`: the amount is outside the per-transaction limits",
    }

    def get_throttles(self):
        # Asking for money is rate-limited like moving it (spam); reading is not.
        return [MoneyRateThrottle()] if self.request.method == "POST" else []

    def get_queryset(self):
        query = MoneyRequestListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.money_requests_for(user=self.request.user, **query.validated_data)

    @extend_schema(
        parameters=[MoneyRequestListQuerySerializer],
        tags=["money requests"],
        description="Requests you made (outgoing) and were asked to pay (incoming), newest "
        "first. `status=expired` includes pending requests past their deadline.",
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=MoneyRequestCreateSerializer,
        responses={201: MoneyRequestSerializer},
        tags=["money requests"],
        description="Ask `payer` (QuickPe ID or email) for money. The payer is notified; both "
        "get `money_request:update`. 400 `self_request` for yourself; expires after 7 days "
        "(QUICKPE_MONEY_REQUEST_DAYS). Rate-limited like money endpoints (429).",
    )
    def post(self, request):
        data = MoneyRequestCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payer = services.payer_resolve(identifier=data.validated_data["payer"])
        money_request = services.money_request_create(
            requester=request.user,
            payer=payer,
            amount=data.validated_data["amount"],
            note=data.validated_data["note"],
            request=request,
        )
        return Response(MoneyRequestSerializer(money_request).data, status=status.HTTP_201_CREATED)


class MoneyRequestDetailView(generics.RetrieveAPIView):
    serializer_class = MoneyRequestSerializer

    def get_queryset(self):
        return selectors.money_requests_for(user=self.request.user)

    @extend_schema(tags=["money requests"], description="Participants only; others get 404.")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MoneyRequestPayView(APIView):
    """Paying is a transfer: idempotent by key and rate-limited like one."""

    throttle_classes = [MoneyRateThrottle]
    throttle_scope = "money_request_pay"
    problem_responses = {
        **STATE_ERRORS,
        "403": "`permission_denied` (you are the requester), `wallet_frozen`",
        "409": STATE_ERRORS["409"] + ", `account_deactivated` (the requester's or the "
        "payer's account is deactivated), `insufficient_funds`, `limit_exceeded`, "
        "`idempotency_key_in_use`",
        "422": "`idempotency_key_reused`",
    }

    @extend_schema(
        request=None,
        responses={201: MoneyRequestPayResultSerializer},
        parameters=[IDEMPOTENCY_KEY],
        tags=["money requests"],
        description="The payer pays the request: a transfer to the requester under every "
        "transfer rule, and the request becomes `paid` in the same transaction, so it is paid "
        "once however many calls race. " + MONEY_ERRORS,
    )
    def post(self, request, pk: int):
        def handler() -> Response:
            money_request, posting = services.money_request_pay(
                user=request.user, money_request_id=pk, request=request
            )
            return Response(
                {
                    "money_request": MoneyRequestSerializer(money_request).data,
                    "transfer": TransferSerializer(posting.transfer).data,
                    "balance": format_paise(posting.wallet.balance),
                },
                status=status.HTTP_201_CREATED,
            )

        return idempotent(request, self, handler)


class MoneyRequestCloseView(APIView):
    """Decline (payer) or cancel (requester) a pending request."""

    service = None
    problem_responses = STATE_ERRORS

    def post(self, request, pk: int):
        money_request = self.service(user=request.user, money_request_id=pk, request=request)
        return Response(MoneyRequestSerializer(money_request).data)


def _close_schema(who: str):
    return extend_schema(
        request=None,
        responses={200: MoneyRequestSerializer},
        tags=["money requests"],
        description=f"{who} only; the other party is notified.",
    )


class MoneyRequestDeclineView(MoneyRequestCloseView):
    service = staticmethod(services.money_request_decline)

    @_close_schema("The payer")
    def post(self, request, pk: int):
        return super().post(request, pk)


class MoneyRequestCancelView(MoneyRequestCloseView):
    service = staticmethod(services.money_request_cancel)

    @_close_schema("The requester")
    def post(self, request, pk: int):
        return super().post(request, pk)
