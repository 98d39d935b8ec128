"""Serializer fields shared by every app's API."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from quickpe.money import InvalidAmount, format_paise, parse_amount


@extend_schema_field(
    {
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
)
class AmountField(serializers.Field):
    """Integer paise inside, ``"1250.00"`` outside."""

    def to_internal_value(self, data) -> int:
        try:
            return parse_amount(data, ceiling=settings.QUICKPE_MAX_BALANCE)
        except InvalidAmount as error:
            raise serializers.ValidationError(str(error), code=error.code) from None

    def to_representation(self, value: int) -> str:
        return format_paise(value)
