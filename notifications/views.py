"""Dashboard page of notifications: newest first, marked read once seen."""

from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from notifications.models import Notification
from notifications.services import notifications_mark_all_read
from quickpe.dashboard import signed_in


@signed_in
def notifications_page(request):
    found = Notification.objects.filter(user=request.user).order_by("-created_at", "-id")
    page = Paginator(found, 25).get_page(request.GET.get("page"))
    return render(request, "dashboard/notifications.html", {"page": page})


@require_POST
@signed_in
def notifications_read_all(request):
    notifications_mark_all_read(user=request.user)
    return redirect("/app/notifications")
