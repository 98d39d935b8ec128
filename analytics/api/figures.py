"""Analytics API: the caller's figures computed from their ledger, and staff KPIs.

Views parse the query, call one selector and render; the SQL lives in ``analytics.selectors``.
"""

from datetime import UTC, datetime, timedelta

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import insights, selectors
from quickpe.authentication import staff_with
from quickpe.business_day import business_day, business_time, day_end
from quickpe.money import format_paise
from wallet.api.fields import DateOrDateTime, Timestamp
from wallet.models import Category

DEFAULT_DAYS = 30
MAX_BUCKETS = 1000

PERIOD = (
    "The period is `from` (inclusive) to `to`, parsed as `/transactions` parses "
    "`created_after` / `created_before`: a date is a calendar day in Asia/Kolkata and `to` "
    "as a date includes that whole day; a datetime is an instant (UTC when it names no zone) "
    "and `to` as a datetime is exclusive. Defaults: `to` is the end of today in Asia/Kolkata, "
    f"`from` is {DEFAULT_DAYS} days before `to`; so with neither, the last {DEFAULT_DAYS} "
    "calendar days in Asia/Kolkata, today included. `from` at or after `to`, a value that is "
    "not a date or datetime, or one that cannot be shown in UTC and Asia/Kolkata (year 1, "
    "year 9999): 400 `validation_error`. Figures are computed from your ledger at request "
    "time, so they equal the sums of `/transactions` over the same period to the paisa."
)
DEFINITIONS = (
    "`sent`, `received`, `deposited`, `withdrawn`: sums of your `transfer_out`, `transfer_in`, "
    "`deposit` and `withdrawal` lines. `reversal` lines count in `net` and `count` only. "
    "`net`: credits minus debits (may be negative). `count`: ledger lines."
)


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^\d+\.\d{2}$",
        "example": "1250.00",
        "description": "INR amount: a string with exactly two decimals.",
    }
)
class AmountFigure(serializers.Field):
    """Integer paise rendered as the contract's amount string."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: int) -> str:
        return format_paise(value)


@extend_schema_field(
    {
        "type": "string",
        "pattern": r"^-?\d+\.\d{2}$",
        "example": "-250.00",
        "description": "INR amount, negative when more went out than came in.",
    }
)
class SignedAmountFigure(AmountFigure):
    pass


def _representable(moment: datetime) -> bool:
    """Whether the instant exists both in UTC (how responses show it) and in Asia/Kolkata
    (how buckets are cut): 0001-01-01 in Kolkata is still year 0 in UTC."""
    try:
        moment.astimezone(UTC)
        business_time(moment)
    except OverflowError:
        return False
    return True


class PeriodQuerySerializer(serializers.Serializer):
    def get_fields(self):
        # `from` is a Python keyword: declared by name.
        return {
            "from": DateOrDateTime(
                end_of_day=False,
                help_text=f"Start, inclusive: a date (Asia/Kolkata day) or an ISO datetime. "
                f"Default: {DEFAULT_DAYS} days before `to`.",
            ),
            "to": DateOrDateTime(
                end_of_day=True,
                help_text="End: a date includes that whole day (Asia/Kolkata); a datetime is "
                "exclusive. Default: the end of today in Asia/Kolkata.",
            ),
            **super().get_fields(),
        }

    def validate(self, attrs: dict) -> dict:
        end = attrs.pop("to", None)
        start = attrs.pop("from", None)
        if end is None:
            end = day_end(business_day())
        if start is None:
            try:
                start = end - timedelta(days=DEFAULT_DAYS)
            except OverflowError:
                start = datetime.min.replace(tzinfo=UTC)  # the calendar's first instant
        for name, moment in (("from", start), ("to", end)):
            if not _representable(moment):
                raise serializers.ValidationError(
                    {
                        name: serializers.ErrorDetail(
                            "Out of range: use a date from 0001-01-02 to 9999-12-30.",
                            code="out_of_range",
                        )
                    }
                )
        if start >= end:
            raise serializers.ValidationError(
                {"to": serializers.ErrorDetail("Must be after `from`.", code="invalid_period")}
            )
        return {**attrs, "start": start, "end": end}


class TimeseriesQuerySerializer(PeriodQuerySerializer):
    interval = serializers.ChoiceField(
        choices=selectors.INTERVALS,
        default="day",
        help_text="Bucket size: an Asia/Kolkata calendar day, ISO week (from Monday) or month. "
        "Default: day.",
    )

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        buckets = selectors.bucket_count(
            start=attrs["start"], end=attrs["end"], interval=attrs["interval"]
        )
        if buckets > MAX_BUCKETS:
            raise serializers.ValidationError(
                serializers.ErrorDetail(
                    f"The period spans {buckets} {attrs['interval']} buckets; at most "
                    f"{MAX_BUCKETS}. Ask for a shorter period or a longer interval.",
                    code="too_many_buckets",
                )
            )
        return attrs


class CounterpartyFiguresSerializer(serializers.Serializer):
    quickpe_id = serializers.CharField()
    name = serializers.CharField()
    amount = AmountFigure(help_text="Sent to them plus received from them in the period.")
    count = serializers.IntegerField(help_text="Transfers either way in the period.")


class SummarySerializer(serializers.Serializer):
    sent = AmountFigure()
    received = AmountFigure()
    deposited = AmountFigure()
    withdrawn = AmountFigure()
    net = SignedAmountFigure()
    count = serializers.IntegerField()
    average_sent = AmountFigure(
        help_text="`sent` / number of `transfer_out` lines, rounded half-up to the paisa; "
        '"0.00" when nothing was sent.'
    )
    top_counterparties = CounterpartyFiguresSerializer(
        many=True,
        help_text="At most 5, by money sent to and received from them together, then by "
        "number of transfers.",
    )

    def get_fields(self):
        return {
            "from": Timestamp(source="start", help_text="Start of the period used (inclusive)."),
            "to": Timestamp(source="end", help_text="End of the period used (exclusive)."),
            **super().get_fields(),
        }


class BucketSerializer(serializers.Serializer):
    start = serializers.DateField(
        help_text="First day of the bucket (Asia/Kolkata): the day, the week's Monday or the "
        "month's first day."
    )
    sent = AmountFigure()
    received = AmountFigure()
    deposited = AmountFigure()
    withdrawn = AmountFigure()
    count = serializers.IntegerField()


class TimeseriesSerializer(serializers.Serializer):
    interval = serializers.ChoiceField(choices=selectors.INTERVALS)
    buckets = BucketSerializer(many=True)


class CategoryShareSerializer(serializers.Serializer):
    category = serializers.ChoiceField(choices=Category.choices)
    amount = AmountFigure()
    count = serializers.IntegerField()
    share = serializers.CharField(
        help_text="Share of all outgoing money in the period, an exact decimal string with 4 "
        "places; the shares of the list add up to exactly 1 (largest-remainder rounding).",
    )


class InsightSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=insights.KINDS)
    title = serializers.CharField()
    message = serializers.CharField(help_text="Plain language; amounts as ₹1,23,456.00.")
    priority = serializers.ChoiceField(choices=insights.PRIORITIES)


class KpiSerializer(serializers.Serializer):
    users_total = serializers.IntegerField(help_text="Every account (staff, deactivated too).")
    users_active_30d = serializers.IntegerField(
        help_text="Users with at least one ledger line in the last 30 days."
    )
    wallets_frozen = serializers.IntegerField()
    transactions_24h = serializers.IntegerField(
        help_text="Money movements in the last 24 hours: deposits, withdrawals, reversal lines "
        "and transfers, each transfer once (its `transfer_out` line)."
    )
    volume_24h = AmountFigure(help_text="The amount of those movements.")
    volume_30d = AmountFigure(help_text="The same over the last 30 days.")
    average_transfer_30d = AmountFigure(
        help_text='Mean transfer amount over the last 30 days, half-up to the paisa; "0.00" '
        "without transfers."
    )
    exports_24h = serializers.IntegerField(help_text="Exports requested in the last 24 hours.")


def _period(request, serializer_class=PeriodQuerySerializer) -> dict:
    query = serializer_class(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data


class SummaryView(APIView):
    @extend_schema(
        parameters=[PeriodQuerySerializer],
        responses={200: SummarySerializer},
        tags=["analytics"],
        description=f"Your totals for a period. {DEFINITIONS} {PERIOD}",
    )
    def get(self, request):
        period = _period(request)
        summary = selectors.summary_for(user=request.user, **period)
        return Response(SummarySerializer(summary).data)


class TimeseriesView(APIView):
    @extend_schema(
        parameters=[TimeseriesQuerySerializer],
        responses={200: TimeseriesSerializer},
        tags=["analytics"],
        description="Your figures per Asia/Kolkata calendar day, ISO week (Monday to Sunday) "
        "or month, oldest first. Every bucket the period touches is listed, those without "
        "lines as zeros; the first and last buckets count only lines inside the period. "
        f"More than {MAX_BUCKETS} buckets: 400 (errors code `too_many_buckets`); unknown "
        f"interval: 400. {DEFINITIONS} {PERIOD}",
    )
    def get(self, request):
        period = _period(request, TimeseriesQuerySerializer)
        buckets = selectors.timeseries_for(user=request.user, **period)
        result = {"interval": period["interval"], "buckets": buckets}
        return Response(TimeseriesSerializer(result).data)


class CategoriesView(APIView):
    @extend_schema(
        parameters=[PeriodQuerySerializer],
        responses={200: CategoryShareSerializer(many=True)},
        tags=["analytics"],
        description="Your outgoing money (every debit line: transfers sent, withdrawals, "
        "debit reversals) per category, largest first; withdrawals carry the category "
        "`other`. Shares add up to exactly 1; an empty list when nothing went out. " + PERIOD,
    )
    def get(self, request):
        period = _period(request)
        rows = selectors.categories_for(user=request.user, **period)
        return Response(CategoryShareSerializer(rows, many=True).data)


class InsightsView(APIView):
    @extend_schema(
        responses={200: InsightSerializer(many=True)},
        tags=["analytics"],
        description=insights.DESCRIPTION,
    )
    def get(self, request):
        found = insights.insights_for(user=request.user, now=timezone.now())
        return Response(InsightSerializer(found, many=True).data)


class KpiView(APIView):
    # The figures are sums of what the admin lists row by row: users, wallets, ledger lines and
    # exports. Whoever may view all four (support, compliance, superusers) may see their sums.
    permission_classes = [
        staff_with(
            "wallet.view_user",
            "wallet.view_wallet",
            "wallet.view_ledgerentry",
            "analytics.view_export",
        )
    ]
    problem_responses = {"403": "`permission_denied`: staff who may view every wallet only"}

    @extend_schema(
        responses={200: KpiSerializer},
        tags=["analytics"],
        description="Staff who may view users, wallets, ledger lines and exports (support, "
        "compliance) only. System-wide figures over the rolling 24 hours and 30 days "
        "before the request, computed at request time.",
    )
    def get(self, request):
        return Response(KpiSerializer(selectors.kpi_figures(now=timezone.now())).data)
