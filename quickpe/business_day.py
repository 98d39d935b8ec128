"""The business day: a calendar day in Asia/Kolkata (``settings.QUICKPE_BUSINESS_TIME_ZONE``).

QuickPe's customers live in India, so their days are Indian days: the daily deposit and sending
limits reset at midnight IST, a statement "for 1 November" covers 1 November IST, the analytics
buckets and the daily figures the database keeps are IST days, and the admin's audit-log export
reads its dates the same way. The database and the API speak UTC; between 18:30 and 24:00 UTC
the day in India is already the next one. Every conversion between instants and business days
goes through this module, so that they cannot disagree.

Days are half-open ranges of instants: a day starts at its ``day_start`` and ends where the
next one starts (``day_end``), so a period of whole days is ``[day_start(first), day_end(last))``.
"""

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def business_zone() -> ZoneInfo:
    """The time zone of business days (read each time, so that tests may override it)."""
    return ZoneInfo(settings.QUICKPE_BUSINESS_TIME_ZONE)


def business_time(moment: datetime) -> datetime:
    """``moment`` (an aware datetime) on the business zone's clock."""
    return moment.astimezone(business_zone())


def business_day(moment: datetime | None = None) -> date:
    """The business day holding ``moment``; without one, today's."""
    return business_time(timezone.now() if moment is None else moment).date()


def day_start(day: date) -> datetime:
    """The first instant of ``day``: its midnight in the business zone."""
    return datetime.combine(day, time.min, tzinfo=business_zone())


def day_end(day: date) -> datetime:
    """The first instant after ``day`` (exclusive): the next day's midnight. OverflowError for
    the calendar's last day."""
    return day_start(day + timedelta(days=1))


def day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """The instants ``[start, end)`` of the whole days ``first`` to ``last``, both included."""
    return day_start(first), day_end(last)
