"""The configurable money limits, checked against a wallet row the caller has locked.

The daily counters are per business day (``quickpe.business_day``): they reset at midnight
Asia/Kolkata, on the first movement of the new day."""

from datetime import date

from django.conf import settings

from quickpe.errors import LimitExceeded
from quickpe.money import format_paise
from wallet.models import Wallet


def daily_totals(wallet: Wallet, today: date) -> tuple[int, int]:
    """(deposited, outgoing) so far today; yesterday's counters count as zero."""
    if wallet.limits_day != today:
        return 0, 0
    return wallet.deposited_on_day, wallet.outgoing_on_day


def _exceeded(limit: str, detail: str, maximum: int, remaining: int | None) -> LimitExceeded:
    error = {"field": "amount", "code": limit, "detail": detail, "limit": format_paise(maximum)}
    if remaining is not None:
        error["remaining"] = format_paise(max(remaining, 0))
    return LimitExceeded(detail, errors=[error])


def check_amount(amount: int) -> None:
    """Per-transaction minimum and maximum; needs no lock."""
    if amount < settings.QUICKPE_MIN_AMOUNT:
        raise _exceeded(
            "min_per_transaction",
            f"The smallest amount is {format_paise(settings.QUICKPE_MIN_AMOUNT)}.",
            settings.QUICKPE_MIN_AMOUNT,
            None,
        )
    if amount > settings.QUICKPE_MAX_PER_TRANSACTION:
        raise _exceeded(
            "max_per_transaction",
            f"The largest amount per transaction is "
            f"{format_paise(settings.QUICKPE_MAX_PER_TRANSACTION)}.",
            settings.QUICKPE_MAX_PER_TRANSACTION,
            settings.QUICKPE_MAX_PER_TRANSACTION,
        )


def _check_daily(code: str, amount: int, used: int, limit: int, message: str) -> None:
    remaining = limit - used
    if amount > remaining:
        raise _exceeded(code, message.format(format_paise(max(remaining, 0))), limit, remaining)


def check_deposit(wallet: Wallet, amount: int, today: date) -> None:
    deposited, _ = daily_totals(wallet, today)
    _check_daily(
        "daily_deposit",
        amount,
        deposited,
        settings.QUICKPE_DAILY_DEPOSIT_LIMIT,
        "This would pass today's deposit limit; you can add {} more today.",
    )
    check_balance_cap(wallet, amount, is_own_wallet=True)


def check_outgoing(wallet: Wallet, amount: int, today: date) -> None:
    _, outgoing = daily_totals(wallet, today)
    _check_daily(
        "daily_outgoing",
        amount,
        outgoing,
        settings.QUICKPE_DAILY_OUTGOING_LIMIT,
        "This would pass today's sending limit; you can send {} more today.",
    )


def check_balance_cap(wallet: Wallet, amount: int, *, is_own_wallet: bool) -> None:
    room = settings.QUICKPE_MAX_BALANCE - wallet.balance
    if amount > room:
        if is_own_wallet:
            detail = (
                f"A wallet can hold at most {format_paise(settings.QUICKPE_MAX_BALANCE)}; "
                f"you can add {format_paise(max(room, 0))} more."
            )
            raise _exceeded("max_balance", detail, settings.QUICKPE_MAX_BALANCE, room)
        # Never reveal how much someone else holds.
        detail = "The recipient's wallet cannot receive this amount."
        raise _exceeded("recipient_max_balance", detail, settings.QUICKPE_MAX_BALANCE, None)


def record(wallet: Wallet, today: date, *, deposited: int = 0, outgoing: int = 0) -> None:
    """Add to today's counters (resetting them on a new day); the caller saves the wallet."""
    if wallet.limits_day != today:
        wallet.limits_day, wallet.deposited_on_day, wallet.outgoing_on_day = today, 0, 0
    wallet.deposited_on_day += deposited
    wallet.outgoing_on_day += outgoing
