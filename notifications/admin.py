from django.contrib import admin

from notifications.models import Notification
from quickpe.admin import ReadOnlyAdmin, admin_link, user_search_help


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """What a customer was told, and when they read it. Only services write notifications."""

    ordering = ["-id"]
    sortable_by = ()
    list_display = ["id", "user_link", "kind", "title", "read_at", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["user"]
    search_user_fields = ("user",)
    search_help_text = user_search_help("user's")
    date_hierarchy = "created_at"

    @admin.display(description="user")
    def user_link(self, notification):
        return admin_link(notification.user)
