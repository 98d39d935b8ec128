import django_filters
from django import forms
from django.db.models import Q, Value
from django.db.models.functions import Concat
from drf_spectacular.utils import extend_schema_field
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

from quickpe.money import InvalidAmount, parse_amount
from wallet.api.fields import AMOUNT_TEXT, DATE_OR_DATETIME, DateOrDateTimeField
from wallet.models import Category, LedgerEntry


class AmountFormField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return None
        try:
            return parse_amount(value, ceiling=None)
        except InvalidAmount as error:
            raise forms.ValidationError(str(error), code=error.code) from None


@extend_schema_field(AMOUNT_TEXT)
class AmountFilter(django_filters.Filter):
    field_class = AmountFormField


@extend_schema_field(DATE_OR_DATETIME)
class DateOrDateTimeFilter(django_filters.Filter):
    field_class = DateOrDateTimeField


# Up to 100 characters once trimmed (as the form field trims); PostgreSQL text holds no NUL.
@extend_schema_field(
    {"type": "string", "pattern": r"^\s*([^\s\x00]([^\x00]{0,98}[^\s\x00])?)?\s*$"}
)
class SearchFilter(django_filters.CharFilter):
    """Free text; PostgreSQL text cannot hold NUL characters."""


class TransactionFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=LedgerEntry.Kind.choices)
    direction = django_filters.ChoiceFilter(choices=LedgerEntry.Direction.choices)
    category = django_filters.ChoiceFilter(choices=Category.choices)
    min_amount = AmountFilter(field_name="amount", lookup_expr="gte")
    max_amount = AmountFilter(field_name="amount", lookup_expr="lte")
    created_after = DateOrDateTimeFilter(field_name="created_at", lookup_expr="gte")
    # A date here includes that whole day; a datetime is exclusive.
    created_before = DateOrDateTimeFilter(
        field_name="created_at", lookup_expr="lt", end_of_day=True
    )
    search = SearchFilter(method="filter_search", max_length=100)

    class Meta:
        model = LedgerEntry
        fields = []

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.annotate(
            counterparty_name=Concat(
                "counterparty__first_name", Value(" "), "counterparty__last_name"
            )
        ).filter(
            Q(description__icontains=value)
            | Q(transfer__note__icontains=value)
            | Q(counterparty_name__icontains=value)
            | Q(counterparty__quickpe_id__iexact=value)
            | Q(reference__iexact=value)
        )


class Ordering(OrderingFilter):
    """DRF's ordering, except that an unknown field is a 400 rather than silently ignored, and
    the schema lists the accepted values."""

    def get_ordering(self, request, queryset, view):
        terms = request.query_params.getlist(self.ordering_param)
        allowed = self._allowed(view)
        fields = [term.strip() for text in terms for term in text.split(",") if term.strip()]
        unknown = [field for field in fields if field not in allowed]
        if unknown:
            raise ValidationError(
                {self.ordering_param: [f"Use one of: {', '.join(allowed)}."]}, code="invalid"
            )
        return fields or self.get_default_ordering(view)

    def _allowed(self, view) -> list[str]:
        return [f"{sign}{name}" for name in view.ordering_fields for sign in ("", "-")]

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Sort order; `-` for descending. Default: newest first.",
                "schema": {"type": "string", "enum": self._allowed(view)},
            }
        ]
