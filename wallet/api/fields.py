"""Fields shared by every app's API: serializer fields, and the form fields filters use."""

from datetime import UTC, datetime

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quickpe.business_day import day_end, day_start
from quickpe.formats import timestamp
from quickpe.money import InvalidAmount, format_paise, parse_amount

# An amount as clients write it: more than zero, at most two decimals, plain digits.
AMOUNT_TEXT = {
    "type": "string",
    "pattern": r"^(0\.(0[1-9]|[1-9][0-9]?)|[1-9][0-9]{0,12}(\.[0-9]{1,2})?)$",
    "example": "1250.50",
}


AMOUNT_RESPONSE = {
    "type": "string",
    "pattern": r"^\d+\.\d{2}$",
    "example": "1250.00",
    "description": (
        "INR amount. Responses: a string with exactly two decimals. Requests: a string or a "
        "JSON number with at most two decimals; zero, negative, exponent notation, NaN or "
        "more than the wallet balance cap is 400 `validation_error` (field code "
        "`invalid_amount` / `amount_too_large`); business limits answer 409 `limit_exceeded`."
    ),
}


class AmountFieldExtension(OpenApiSerializerFieldExtension):
    """Responses always write ``"1250.00"``; requests take that, fewer decimals, or a JSON
    number."""

    target_class = "wallet.api.fields.AmountField"

    def map_serializer_field(self, auto_schema, direction):
        if direction == "response":
            return AMOUNT_RESPONSE
        return {
            "oneOf": [AMOUNT_TEXT, {"type": "number", "minimum": 0, "exclusiveMinimum": True}],
            "example": "1250.50",
            "description": AMOUNT_RESPONSE["description"],
        }


class AmountField(serializers.Field):
    """Integer paise inside, ``"1250.00"`` outside."""

    def to_internal_value(self, data) -> int:
        try:
            return parse_amount(data, ceiling=settings.QUICKPE_MAX_BALANCE)
        except InvalidAmount as error:
            raise serializers.ValidationError(str(error), code=error.code) from None

    def to_representation(self, value: int) -> str:
        return format_paise(value)


class Text(serializers.CharField):
    """A CharField that takes only JSON strings. DRF's would turn ``0`` into ``"0"``, a value
    the schema (``type: string``) says is refused."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class TextExtension(OpenApiSerializerFieldExtension):
    """What DRF's CharField refuses, in the schema: NUL characters (PostgreSQL text cannot hold
    them) and, unless blank is allowed, a value that is all whitespace once trimmed."""

    target_class = "wallet.api.fields.Text"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if direction == "request" and "pattern" not in schema:
            field = self.target
            needs_text = not field.allow_blank and field.trim_whitespace
            schema["pattern"] = r"^[^\x00]*[^\s\x00][^\x00]*$" if needs_text else r"^[^\x00]*$"
        return schema


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
            return moment.replace(tzinfo=UTC)
        # In UTC: PostgreSQL refuses offsets past 15:59 that ISO 8601 (and Python) allow. An
        # instant before year 1 or after 9999 in UTC is before or after every row there is.
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


DATE_OR_DATETIME = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
    "example": "2026-11-22",
}


@extend_schema_field(DATE_OR_DATETIME)
class DateOrDateTime(Text):
    """A date (an Asia/Kolkata calendar day) or an ISO datetime, read exactly as
    `/transactions` reads ``created_after`` / ``created_before``. (In a query string, DRF
    takes an empty value as "not given".)"""

    def __init__(self, *, end_of_day: bool, **kwargs):
        self.parser = DateOrDateTimeField(end_of_day=end_of_day, required=False)
        super().__init__(required=False, max_length=64, **kwargs)

    def run_validation(self, data=serializers.empty):
        # The text passes CharField's checks (type, length, NUL characters) first, then
        # becomes an instant; the validators must not see the datetime.
        text = super().run_validation(data)
        try:
            return self.parser.clean(text)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages[0], code="invalid") from None


class Timestamp(serializers.DateTimeField):
    """A time as the API writes times (``quickpe.formats.timestamp``), whatever its year."""

    def to_representation(self, value):
        return timestamp(value)
