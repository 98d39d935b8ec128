from datetime import UTC, datetime

import django_filters
from django import forms
from django.db.models import Q, Value
from django.db.models.functions import Concat
from django.utils.dateparse import parse_date, parse_datetime

from quickpe.business_day import day_end, day_start
from quickpe.money import InvalidAmount, parse_amount
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


class AmountFilter(django_filters.Filter):
    field_class = AmountFormField


class DateOrDateTimeField(forms.CharField):
    """A date (a calendar day in Asia/Kolkata) or an ISO datetime with or without zone."""

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(**kwargs)

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return None
        # Well-formed but impossible values (2026-13-45, 25:00, 9999-12-31 + a day) raise
        # ValueError/OverflowError from the parsers: a 400, not a 500.
        try:
            return self._to_datetime(value)
        except (ValueError, OverflowError):
            raise forms.ValidationError(
                "Use a date (2026-11-22) or an ISO datetime.", code="invalid"
            ) from None

    def _to_datetime(self, value: str) -> datetime:
        moment = parse_datetime(value) if "T" in value or " " in value else None
        if moment is None:
            day = parse_date(value) if len(value) == 10 else None
            if day is None:
                raise ValueError(value)
            return day_end(day) if self.end_of_day else day_start(day)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment


class DateOrDateTimeFilter(django_filters.Filter):
    field_class = DateOrDateTimeField


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
    search = django_filters.CharFilter(method="filter_search", max_length=100)

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
