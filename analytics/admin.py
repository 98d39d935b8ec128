"""Exports in the admin: staff see every export's state; a file can be downloaded only by the
staff member who asked for it (an audit-log export of the compliance group). Customers'
statements are theirs: staff follow their progress here but do not read them."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.urls import path, reverse
from django.utils.html import format_html

from analytics.api.exports import file_response
from analytics.models import Export
from quickpe.admin import ReadOnlyAdmin, admin_link


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    ordering = ["-created_at"]
    sortable_by = ()
    list_display = ["id", "owner", "kind", "format", "status", "progress", "rows", "created_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["user"]
    search_user_fields = ("user",)
    search_help_text = "The owner's exact email address or QuickPe ID (QP...)."
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
