"""Template filters of the dashboard: money in Indian style, signed lines, field errors."""

from django import template

from quickpe.money import format_inr

register = template.Library()


@register.filter
def inr(paise) -> str:
    """10000000 -> ₹1,00,000.00 (quickpe.money.format_inr: the one place for the format)."""
    return format_inr(int(paise or 0))


@register.filter
def signed_inr(entry) -> str:
    """A ledger line as money in (+) or out (-)."""
    sign = "+" if entry.direction == "credit" else "-"
    return f"{sign}{format_inr(entry.amount)}"


@register.filter
def error_for(errors: dict, field: str) -> str:
    return errors.get(field, "") if errors else ""


@register.filter
def value_of(values, field: str) -> str:
    return values.get(field, "") if values else ""


@register.filter
def percent(share) -> str:
    return f"{float(share) * 100:.0f}%"


@register.filter
def status_at(money_request, now) -> str:
    """The status people see: a pending request past its deadline reads expired."""
    return money_request.current_status(now)
