"""Admin pieces shared by the apps: the admin site (on India's clock), list pages that stay
fast on large tables, read-only admins, indexed searches, links between related objects, and
actions that ask for a reason on a page that names what they change.

Lists never count a whole table (``BoundedCountPaginator``, ``show_full_result_count = False``)
and searches read indexes only: a QuickPe ID or a reference by equality, names and emails by
their start (``User.objects.matching``), never ``LIKE '%...%'`` scans. Every change an action
makes goes through one service, which audits it.
"""

import calendar
from collections.abc import Callable
from datetime import date
from functools import update_wrapper
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import PAGE_VAR
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Model, Q
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst

from quickpe.business_day import business_zone
from quickpe.errors import QuickPeError

# An action changes at most this many rows at once: "select all" on a large list must not
# freeze (or reverse) thousands of things by one click.
MAX_ACTION_OBJECTS = 50


class QuickPeAdminSite(admin.AdminSite):
    """The admin site (``quickpe.apps.AdminConfig``): every page on India's clock.

    Support staff answer customers who read Asia/Kolkata times on their pages and statements,
    so every time on an admin page is shown in that zone, and the date hierarchy's days and
    months are Asia/Kolkata ones (Django bounds them in the current time zone): "8 November"
    in the admin is the 8 November of the customer's statement."""

    def admin_view(self, view, cacheable=False):
        checked = super().admin_view(view, cacheable)

        def on_business_clock(request, *args, **kwargs):
            with timezone.override(business_zone()):
                response = checked(request, *args, **kwargs)
                # Django renders a TemplateResponse after the view returns, outside this
                # block: render it here, where times are still converted to the zone.
                if isinstance(response, SimpleTemplateResponse):
                    response.render()
                return response

        return update_wrapper(on_business_clock, checked)


class BoundedCountPaginator(Paginator):
    """Counts at most ``pages_ahead`` pages past the page shown, never the whole table:
    ``SELECT count(*) FROM (SELECT ... LIMIT n)``. Page links reach that far; from the last
    one, the count reaches further. ``is_bounded`` says there may be more rows."""

    pages_ahead = 10

    def __init__(self, *args, page_number: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        self.page_number = max(page_number, 1)
        self.is_bounded = False

    @cached_property
    def count(self) -> int:
        bound = (self.page_number + self.pages_ahead) * self.per_page
        counted = self.object_list[: bound + 1].count()
        self.is_bounded = counted > bound
        return min(counted, bound)


def calendar_dates(cl) -> dict:
    """The date hierarchy's links, drawn from the calendar rather than from the rows.

    Django's asks the database, on every page view, for the MIN/MAX and the DISTINCT years,
    months or days of every matching row: two scans of the whole ledger. Here: the years since
    the oldest row (the first by primary key, as rows are written in time order: one index
    probe), the months of a year, the days of a month, never past today. A link may lead to a
    period without rows; the filter itself is Django's (a created_at range, indexed or not)."""
    field = cl.date_hierarchy
    year, month, day = (cl.params.get(f"{field}__{part}") for part in ("year", "month", "day"))

    def link(**parts) -> str:
        return cl.get_query_string({f"{field}__{k}": v for k, v in parts.items()}, [f"{field}__"])

    def label(moment: date, style: str) -> str:
        return capfirst(formats.date_format(moment, style))

    today = timezone.localdate()
    if year and month and day:
        chosen = date(int(year), int(month), int(day))
        return {
            "back": {
                "link": link(year=year, month=month),
                "title": label(chosen, "YEAR_MONTH_FORMAT"),
            },
            "choices": [{"title": label(chosen, "MONTH_DAY_FORMAT")}],
        }
    if year and month:
        first = date(int(year), int(month), 1)
        last = calendar.monthrange(first.year, first.month)[1]
        if (first.year, first.month) == (today.year, today.month):
            last = today.day
        return {
            "back": {"link": link(year=year), "title": year},
            "choices": [
                {
                    "link": link(year=year, month=month, day=number),
                    "title": label(first.replace(day=number), "MONTH_DAY_FORMAT"),
                }
                for number in range(1, last + 1)
            ],
        }
    if year:
        last = today.month if int(year) == today.year else 12
        return {
            "back": {"link": link(), "title": "All dates"},
            "choices": [
                {
                    "link": link(year=year, month=number),
                    "title": label(date(int(year), number, 1), "YEAR_MONTH_FORMAT"),
                }
                for number in range(1, last + 1)
            ],
        }
    oldest = cl.root_queryset.order_by("pk").values_list(field, flat=True).first()
    if oldest is None:
        return {}
    first_year = timezone.localtime(oldest).year if timezone.is_aware(oldest) else oldest.year
    return {
        "back": None,
        "choices": [
            {"link": link(year=number), "title": str(number)}
            for number in range(first_year, today.year + 1)
        ],
    }


class StaffAdmin(admin.ModelAdmin):
    """The base of every QuickPe admin. Subclasses name the fields a search looks in."""

    change_list_template = "admin/staff_change_list.html"
    show_full_result_count = False
    # Facet counts are COUNT(*)s of the whole filtered table, one per filter choice.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    # Paths from this model to the users an email or QuickPe ID search matches ("pk" on User).
    search_user_fields: tuple[str, ...] = ()
    # Reference prefix ("TRF", "TXN") -> the field holding such references.
    search_reference_fields: dict[str, str] = {}
    search_help_text = (
        "A QuickPe ID (QP...), a reference (TRF..., TXN...), or the start of a first, last or "
        "full name or of an email, in any case."
    )

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        try:
            page_number = int(request.GET.get(PAGE_VAR, 1))
        except ValueError:
            page_number = 1
        return BoundedCountPaginator(
            queryset, per_page, orphans, allow_empty_first_page, page_number=page_number
        )

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        changelist.calendar = calendar_dates(changelist) if changelist.date_hierarchy else {}
        return changelist

    @property
    def _searches_by_index(self) -> bool:
        return bool(self.search_user_fields or self.search_reference_fields)

    def get_search_fields(self, request):
        if not self._searches_by_index:
            return super().get_search_fields(request)  # a subclass's own search_fields
        # Only decides whether the search box shows; get_search_results does the searching.
        return [*self.search_user_fields, *self.search_reference_fields.values()]

    def get_search_results(self, request, queryset, search_term):
        """A reference (``TRF...``, ``TXN...``) finds its row(s) by equality; anything else
        finds the rows of the users it names (``User.objects.matching``: a QuickPe ID, or the
        start of a name or email), through a subquery on the users' indexes and then the rows'
        user-id indexes."""
        if not self._searches_by_index:
            return super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term:
            return queryset, False
        field = self.search_reference_fields.get(term[:3].upper())
        if field is not None:
            return queryset.filter(**{field: term.upper()}), False
        if not self.search_user_fields:
            return queryset.none(), False
        users = get_user_model().objects.matching(term).values("pk")
        condition = Q()
        for path in self.search_user_fields:
            condition |= Q(**{f"{path}__in": users})
        return queryset.filter(condition), False

    def changelist_view(self, request, extra_context=None):
        # Django quietly ignores an action the user may not run; refuse it loudly instead.
        if request.method == "POST":
            allowed = self.get_actions(request)
            if any(name and name not in allowed for name in request.POST.getlist("action")):
                raise PermissionDenied
        return super().changelist_view(request, extra_context)


class ReadOnlyAdmin(StaffAdmin):
    """For records that only services write (ledger, audit): staff can look, never change."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def user_search_help(whose: str) -> str:
    """The search box's help on a list searched by its users (``search_user_fields``)."""
    return (
        f"The start of the {whose} first, last or full name or email (any case), or a "
        "QuickPe ID (QP...)."
    )


def admin_link(obj: Model | None, label: object = None) -> str:
    """A link to ``obj``'s admin page (``-`` for nothing)."""
    if obj is None:
        return "-"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, obj if label is None else label)


def changelist_link(model: type[Model], label: object, **params: object) -> str:
    """A link to ``model``'s admin list, filtered by ``params`` (e.g. ``q=QP12345678``)."""
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    return format_html('<a href="{}?{}">{}</a>', url, urlencode(params), label)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Recorded in the audit log under your name. The customer does not see it.",
    )


def reason_action(
    modeladmin: admin.ModelAdmin,
    request,
    queryset,
    *,
    name: str,
    title: str,
    effect: str,
    describe: Callable[[Model], dict[str, object]],
    service: Callable[[Model, str], object],
    done: str,
):
    """Run an action that needs a reason: the first POST (from the list) shows a page asking
    for it, which says what the action does (``effect``) and to whom, one row per selected
    object (``describe(obj)``: column -> value, e.g. the amount and both parties of a
    transfer), so that staff confirm what they see; the second POST calls
    ``service(obj, reason)`` for each. Each call is its own transaction; a refused one is
    reported and changes nothing."""
    objects = list(queryset[: MAX_ACTION_OBJECTS + 1])
    if len(objects) > MAX_ACTION_OBJECTS:
        modeladmin.message_user(
            request, f"Select at most {MAX_ACTION_OBJECTS} rows for this action.", messages.ERROR
        )
        return None
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        succeeded = 0
        for obj in objects:
            try:
                service(obj, form.cleaned_data["reason"])
            except QuickPeError as error:
                modeladmin.message_user(request, f"{obj}: {error.detail}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            modeladmin.message_user(request, done.format(count=succeeded), messages.SUCCESS)
        return None
    described = [describe(obj) for obj in objects]
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": modeladmin.model._meta,
        "effect": effect,
        "columns": list(described[0]) if described else [],
        "rows": [list(row.items()) for row in described],
        "objects": objects,
        "form": form,
        "action": name,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/support_action.html", context)
