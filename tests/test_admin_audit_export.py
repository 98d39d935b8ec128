"""Compliance staff export the whole audit log from the admin: a Celery-built export like a
customer's, that only its requester can download, and that the public API never shows."""

import csv
import io
import re
from datetime import timedelta

import pytest
from django.utils import timezone
from pypdf import PdfReader

from analytics.models import Export
from analytics.services import audit_log_export_create
from analytics.tasks import export_build
from audit.models import AuditEntry
from quickpe.business_day import business_day
from quickpe.errors import NotAllowed
from tests.conftest import assert_problem, client_for, fund, snapshot
from tests.test_admin import staff_in
from wallet.services.money import transfer_create

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("export_folder")]
EXPORT_PAGE = "/admin/audit/auditentry/export/"


def today() -> str:
    """The form's days are Asia/Kolkata days: from 18:30 UTC, today there is tomorrow in UTC."""
    return business_day().isoformat()


def ask(browser, fmt: str = "csv"):
    return browser.post(EXPORT_PAGE, {"start": today(), "end": today(), "format": fmt})


def test_compliance_exports_everyones_entries_and_only_they_can_download(alice, bob):
    fund(alice, 100_00)
    transfer_create(sender=alice, recipient=bob, amount=40_00)
    staff, browser = staff_in("compliance")
    assert b"Export the log" in browser.get("/admin/audit/auditentry/").content
    assert browser.get(EXPORT_PAGE).status_code == 200

    response = ask(browser)

    export = Export.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/admin/analytics/export/{export.pk}/change/"
    assert (export.user, export.kind, export.status) == (staff, "audit_log", "queued")
    requested = AuditEntry.objects.get(action="export.create")
    assert (requested.actor, requested.data["kind"]) == (staff, "audit_log")

    export_build(export.pk)  # the real task, run here; the worker test runs it in a worker
    download = browser.get(f"/admin/analytics/export/{export.pk}/download/")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert rows[0] == ["seq", "time_ist", "actor", "action", "entity", "ip", "hash"]
    body = rows[1:]
    actors = {row[2] for row in body}
    assert {alice.quickpe_id, bob.quickpe_id} <= actors
    in_period = AuditEntry.objects.filter(created_at__gte=export.period_start)
    assert [int(row[0]) for row in body] == list(
        in_period.filter(created_at__lt=export.period_end)
        .order_by("seq")
        .values_list("seq", flat=True)
    )

    _other, someone_else = staff_in("compliance")
    assert someone_else.get(f"/admin/analytics/export/{export.pk}/download/").status_code == 404
    assert someone_else.get(f"/admin/analytics/export/{export.pk}/change/").status_code == 200


def test_the_audit_log_pdf_names_each_actor(alice):
    fund(alice, 100_00)
    _staff, browser = staff_in("compliance")
    ask(browser, "pdf")
    export = Export.objects.get()
    export_build(export.pk)

    download = browser.get(f"/admin/analytics/export/{export.pk}/download/")
    text = "\n".join(
        page.extract_text() for page in PdfReader(io.BytesIO(b"".join(download))).pages
    )
    assert "Audit log" in text
    assert alice.quickpe_id in text
    assert re.search(r"Page 1\s*of\s*1", text)


@pytest.mark.parametrize("group", ["support", None])
def test_staff_without_the_permission_cannot_export_the_log(group, alice):
    fund(alice, 100_00)
    _staff, browser = staff_in(group)
    before = snapshot()

    assert browser.get(EXPORT_PAGE).status_code == 403
    assert ask(browser).status_code == 403
    assert b"Export the log" not in browser.get("/admin/audit/auditentry/").content

    assert snapshot() == before
    assert not Export.objects.exists()


def test_the_service_refuses_anyone_without_the_permission(alice):
    moment = timezone.now()
    with pytest.raises(NotAllowed):
        audit_log_export_create(
            actor=alice, format="csv", period_start=moment - timedelta(days=1), period_end=moment
        )
    assert not Export.objects.exists()


def test_the_api_neither_shows_nor_accepts_audit_log_exports(alice):
    staff, browser = staff_in("compliance")
    ask(browser)
    export = Export.objects.get()
    export_build(export.pk)
    api = client_for(staff)

    assert api.get("/api/v1/exports").json()["results"] == []
    for path in (f"/api/v1/exports/{export.pk}", f"/api/v1/exports/{export.pk}/download"):
        assert_problem(api.get(path), 404, "not_found")
    before = snapshot()
    refused = api.post("/api/v1/exports", {"kind": "audit_log", "format": "csv"}, format="json")
    assert_problem(refused, 400, "validation_error")
    assert snapshot() == before
