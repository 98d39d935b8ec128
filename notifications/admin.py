from django.contrib import admin

from notifications.models import Notification
from quickpe.admin import ReadOnlyAdmin, admin_link


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """What a customer was told, and when they read it. Only services write notifications."""

    ordering = ["-id"]
    sortable_by = ()
    list_display = ["id", "user_link", "kind", "title", "read_at", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_user_fields = ("user",)
    search_help_text = "The user's exact email address or QuickPe ID (QP...)."
    date_hierarchy = "created_at"

    @admin.display(description="user")
    def user_link(self, notification):
        return admin_link(notification.user)
