from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils.html import format_html

from audit.models import AuditEntry
from audit.services import audit_verify
from quickpe.admin import ReadOnlyAdmin, admin_link, user_search_help

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
    from the list page. Exporting the whole log is added by ``analytics.admin``, which builds
    exports."""

    ordering = ["-seq"]
    sortable_by = ()
    list_display = ["seq", "action", "actor_link", "entity", "ip", "created_at"]
    list_select_related = ["actor"]
    search_user_fields = ("actor",)
    search_help_text = user_search_help("actor's")
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
        return [verify, *super().get_urls()]

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
