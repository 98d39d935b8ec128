"""Exports in the admin: staff see every export's state; a file can be downloaded only by the
staff member who asked for it (an audit-log export of the compliance group). Customers'
statements are theirs: staff follow their progress here but do not read them.

The audit log's admin gets its export page here too: analytics builds exports, and audit, a
lower layer, knows nothing of them."""

from datetime import datetime, timedelta

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from analytics.api.exports import file_response
from analytics.models import Export
from analytics.services import audit_log_export_create
from audit.admin import AuditEntryAdmin
from audit.models import AuditEntry
from quickpe.admin import ReadOnlyAdmin, admin_link, user_search_help
from quickpe.business_day import business_day, day_bounds


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    ordering = ["-created_at"]
    sortable_by = ()
    list_display = ["id", "owner", "kind", "format", "status", "progress", "rows", "created_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["user"]
    search_user_fields = ("user",)
    search_help_text = user_search_help("owner's")
    date_hierarchy = "created_at"
    readonly_fields = ["download"]

    @admin.display(description="owner")
    def owner(self, export):
        return admin_link(export.user)

    @admin.display(description="file")
    def download(self, export):
        if export.status != Export.Status.DONE:
            return export.error or f"{export.status} ({export.progress}%)"
        url = reverse("admin:analytics_export_download", args=[export.pk])
        return format_html(
            '<a href="{}">Download {}</a> (its owner only)', url, export.format.upper()
        )

    def get_urls(self):
        download = path(
            "<int:pk>/download/",
            self.admin_site.admin_view(self.download_view),
            name="analytics_export_download",
        )
        return [download, *super().get_urls()]

    def download_view(self, request, pk: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        export = Export.objects.select_related("user").filter(pk=pk, user=request.user).first()
        if export is None or export.status != Export.Status.DONE:
            raise Http404("No such export of yours is ready.")
        return file_response(export)


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


admin.site.unregister(AuditEntry)


@admin.register(AuditEntry)
class AuditEntryWithExportAdmin(AuditEntryAdmin):
    """The audit log's admin, plus ``export/``: staff with ``audit.export_log`` (the compliance
    group) export the whole log as CSV or PDF, built by a Celery worker like a customer's
    export."""

    def get_urls(self):
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name="audit_auditentry_export",
        )
        return [export, *super().get_urls()]

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
