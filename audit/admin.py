from django.contrib import admin

from audit.models import AuditEntry
from quickpe.admin import ReadOnlyAdmin


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read-only: the database refuses UPDATE and DELETE on this table anyway."""

    list_display = ["seq", "action", "actor", "entity_type", "entity_id", "ip", "created_at"]
    list_filter = ["action", "entity_type"]
    search_fields = ["actor__quickpe_id", "entity_id", "action"]
    list_select_related = ["actor"]
