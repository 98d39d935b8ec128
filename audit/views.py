"""Dashboard page of the user's own audit trail (what the chain recorded about them)."""

from django.core.paginator import Paginator
from django.shortcuts import render

from audit.models import AuditEntry
from quickpe.dashboard import signed_in


@signed_in
def audit_page(request):
    found = AuditEntry.objects.filter(actor=request.user).order_by("-seq")
    page = Paginator(found, 25).get_page(request.GET.get("page"))
    return render(request, "dashboard/audit.html", {"page": page})
