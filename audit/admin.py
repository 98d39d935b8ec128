from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from analytics.models import Export
from analytics.services import audit_log_export_create
from audit.models import AuditEntry
from audit.services import audit_verify
from quickpe.admin import ReadOnlyAdmin, admin_link
from quickpe.business_day import business_day, day_bounds


class AuditLogExportForm(forms.Form):
    """A period of whole Asia/Kolkata days (inclusive), as the customers' exports read it."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    format = forms.ChoiceField(choices=Export.Format.choices)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            raise forms.ValidationError("'To' must not be before 'From'.")
        return data

    def period(self) -> tuple[datetime, datetime]:
        return day_bounds(self.cleaned_data["start"], self.cleaned_data["end"])


# entity_type -> the admin page of that kind of object.
_ENTITY_PAGES = {
    "user": "admin:wallet_user_change",
    "wallet": "admin:wallet_wallet_change",
    "transfer": "admin:wallet_transfer_change",
    "ledger_entry": "admin:wallet_ledgerentry_change",
    "money_request": "admin:wallet_moneyrequest_change",
    "session": "admin:wallet_devicesession_change",
}


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read-only, superusers included: the database refuses UPDATE and DELETE on this table
    anyway. Staff with ``audit.verify_chain`` (the compliance group) can run the chain check
    from the list page, and those with ``audit.export_log`` (compliance too) export the whole
    log as CSV or PDF, built by a Celery worker like a customer's export."""

    ordering = ["-seq"]
    sortable_by = ()
    list_display = ["seq", "action", "actor_link", "entity", "ip", "created_at"]
    list_select_related = ["actor"]
    search_user_fields = ("actor",)
    search_help_text = "The actor's exact email address or QuickPe ID (QP...)."
    date_hierarchy = "created_at"

    @admin.display(description="actor")
    def actor_link(self, entry):
        return admin_link(entry.actor)

    @admin.display(description="entity")
    def entity(self, entry):
        label = f"{entry.entity_type} {entry.entity_id}".strip()
        page = _ENTITY_PAGES.get(entry.entity_type)
        if page is None or not entry.entity_id.isdigit():
            return label
        try:
            return format_html('<a href="{}">{}</a>', reverse(page, args=[entry.entity_id]), label)
        except NoReverseMatch:
            return label

    def get_urls(self):
        verify = path(
            "verify/",
            self.admin_site.admin_view(self.verify_view),
            name="audit_auditentry_verify",
        )
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="audit_auditentry_export",
        )
        return [verify, export, *super().get_urls()]

    def export_view(self, request):
        """GET shows the form (default: the last 30 days); POST queues the export and goes to
        its page, where its progress and, once built, its download link show."""
        if not request.user.has_perm("audit.export_log"):
            raise PermissionDenied
        today = business_day()
        initial = {"start": today - timedelta(days=29), "end": today, "format": "csv"}
        form = AuditLogExportForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            start, end = form.period()
            export = audit_log_export_create(
                actor=request.user,
                format=form.cleaned_data["format"],
                period_start=start,
                period_end=end,
                request=request,
            )
            messages.success(request, f"Audit log export #{export.pk} queued.")
            return HttpResponseRedirect(reverse("admin:analytics_export_change", args=[export.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Export the audit log",
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/audit/auditentry/export.html", context)

    def verify_view(self, request):
        """GET shows the page; POST walks every chain (a full read of the log, so only on
        request) and shows the result."""
        if not request.user.has_perm("audit.verify_chain"):
            raise PermissionDenied
        result = audit_verify() if request.method == "POST" else None
        context = {
            **self.admin_site.each_context(request),
            "title": "Verify the audit chain",
            "opts": self.model._meta,
            "result": result,
        }
        return TemplateResponse(request, "admin/audit/auditentry/verify.html", context)
