"""Exports: statements and audit trails as CSV and PDF, the claim that lets one worker build a
job, and the API around them. The builds here run in the test process (the task function
called directly); tests/test_exports_worker.py runs them in real worker processes."""

import csv
import io
import re
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pgtrigger
import pytest
from django.core.files.storage import storages
from django.db.models import F
from pypdf import PdfReader
from reportlab.pdfbase import pdfdoc
from reportlab.pdfgen import canvas

from analytics import documents, services
from analytics.models import Export
from analytics.tasks import RUNNING_LOOKS, export_build
from audit.models import AuditEntry
from notifications.models import Event, Notification
from tests.conftest import assert_problem, client_for, fund, make_user, snapshot
from wallet.models import LedgerEntry
from wallet.services.money import transfer_create, withdrawal_create

REPORTLAB_COLLECTOR = pdfdoc.PDFFile

pytestmark = pytest.mark.django_db
IST = ZoneInfo("Asia/Kolkata")


@pytest.fixture(autouse=True)
def _export_folder(settings, export_folder):
    settings.QUICKPE_EXPORT_RATE = None
    return export_folder


def stored_files(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def at(day: str, clock: str = "12:00") -> datetime:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=IST)


def backdate(entries, moment: datetime) -> None:
    """Move ledger lines (and nothing else) to ``moment``; the ledger is append-only, so the
    test lifts its trigger for this one statement."""
    with pgtrigger.ignore("wallet.LedgerEntry:wallet_ledgerentry_append_only"):
        LedgerEntry.objects.filter(pk__in=[entry.pk for entry in entries]).update(created_at=moment)


@pytest.fixture
def history(alice, bob):
    """Alice: lines before, inside and after November 2026 (IST)."""
    fund(alice, 5_000_00)
    before = list(LedgerEntry.objects.filter(wallet__user=alice))
    backdate(before, at("2026-10-31", "23:59"))
    inside = []
    for amount, note in [(250_00, "Rent, “Nov”"), (1_999_99, "Ключ 🔑 naïve")]:
        transfer_create(sender=alice, recipient=bob, amount=amount, note=note)
        inside.append(LedgerEntry.objects.filter(wallet__user=alice).latest("pk"))
    transfer_create(sender=bob, recipient=alice, amount=75_50, note="Chai")
    inside.append(LedgerEntry.objects.filter(wallet__user=alice).latest("pk"))
    withdrawal_create(user=alice, amount=100_00)
    inside.append(LedgerEntry.objects.filter(wallet__user=alice).latest("pk"))
    for index, entry in enumerate(inside):
        backdate([entry], at("2026-11-01", "00:00") + timedelta(days=index * 9, minutes=index))
    fund(alice, 10_00)  # after the period
    after = LedgerEntry.objects.filter(wallet__user=alice).latest("pk")
    backdate([after], at("2026-12-01", "00:00"))
    return inside


def request_export(user, kind="statement", fmt="csv", **period):
    body = {"kind": kind, "format": fmt, **period}
    return client_for(user).post("/api/v1/exports", body, format="json")


def build(user, **kwargs) -> Export:
    response = request_export(user, **kwargs)
    assert response.status_code == 202, response.content
    assert export_build(response.json()["id"]) == "done"
    return Export.objects.get(pk=response.json()["id"])


def download(user, export: Export):
    response = client_for(user).get(f"/api/v1/exports/{export.pk}/download")
    assert response.status_code == 200
    return b"".join(response.streaming_content), response


def csv_rows(content: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode("utf-8"))))


def paise(text: str) -> int:
    return int(Decimal(text.replace(",", "")) * 100) if text else 0


NOVEMBER = {"from": "2026-11-01", "to": "2026-11-30"}


def test_a_statement_csv_balances_and_equals_the_transactions_api(alice, history):
    export = build(alice, **NOVEMBER)
    content, response = download(alice, export)

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    rows = csv_rows(content)
    assert rows[0] == [
        "date_ist",
        "reference",
        "kind",
        "description",
        "counterparty",
        "debit",
        "credit",
        "balance",
    ]
    opening, lines, totals, closing = rows[1], rows[2:-2], rows[-2], rows[-1]
    assert opening[3] == "Opening balance" and paise(opening[7]) == 5_000_00
    assert closing[3] == "Closing balance"
    debits, credits = sum(paise(r[5]) for r in lines), sum(paise(r[6]) for r in lines)
    assert (paise(totals[5]), paise(totals[6])) == (debits, credits)
    assert paise(opening[7]) + credits - debits == paise(closing[7])
    # The closing balance is the wallet's balance_after at the end of the period.
    last_inside = (
        LedgerEntry.objects.filter(wallet__user=alice, created_at__lt=at("2026-12-01", "00:00"))
        .order_by("-created_at", "-id")
        .first()
    )
    assert paise(closing[7]) == last_inside.balance_after
    # The same lines as /transactions for the same period, oldest first.
    listed = client_for(alice).get(
        "/api/v1/transactions",
        {"created_after": "2026-11-01", "created_before": "2026-11-30", "ordering": "created_at"},
    )
    expected = [
        (t["reference"], t["kind"], t["amount"], t["balance_after"])
        for t in listed.json()["results"]
    ]
    got = [(r[1], r[2], r[5] or r[6], r[7]) for r in lines]
    assert got == expected
    assert len(got) == len(history) == export.rows
    assert "Ключ 🔑 naïve" in {r[3] for r in lines}  # UTF-8 survives in the CSV


FORMULAS = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\tx", "\rx"]


def test_formula_cells_in_the_other_partys_statement_are_neutralised_and_the_pdf_is_not(alice):
    """OWASP CSV injection: text a sender chose (a note, their name) that a spreadsheet would
    run as a formula is written with a leading quote; amounts stay numbers, the PDF shows the
    text as it was typed."""
    mallory = make_user("@SUM(A1)", "=cmd")
    fund(mallory, 100_00)
    for note in FORMULAS:
        transfer_create(sender=mallory, recipient=alice, amount=1_00, note=note)
    withdrawal_create(user=alice, amount=2_00)

    lines = csv_rows(download(alice, build(alice))[0])[2:-2]
    received = [line for line in lines if line[2] == "transfer_in"]
    assert [line[3] for line in received] == [f"'{note}" for note in FORMULAS]
    assert {line[4] for line in received} == {f"'@SUM(A1) =cmd ({mallory.quickpe_id})"}
    # Amount columns are numbers, decided by column: never quoted.
    assert [line[6] for line in received] == ["1.00"] * len(FORMULAS)
    assert lines[-1][5] == "2.00" and not lines[-1][7].startswith("'")

    pdf = PdfReader(io.BytesIO(download(alice, build(alice, fmt="pdf"))[0]))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert "@SUM(A1) =cmd" in text and "'@SUM" not in text and "'=" not in text
    assert "=HYPERLINK(" in text and "-2+3" in text


def test_the_pdf_carries_the_same_lines_as_the_csv(alice, history):
    as_csv = csv_rows(download(alice, build(alice, **NOVEMBER))[0])
    export = build(alice, fmt="pdf", **NOVEMBER)
    content, response = download(alice, export)

    assert response["Content-Type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(content))
    text = "\n".join(page.extract_text() for page in reader.pages)
    for needed in ["QuickPe", "Account statement", "Alice Sharma", alice.quickpe_id]:
        assert needed in text
    assert "2026-11-01 to 2026-11-30" in text
    assert re.search(r"Page 1\s*of\s*1", text)
    # The same lines in the same order: references, dates, and every figure (opening
    # balance, each line's amount and running balance, totals, closing balance).
    lines = as_csv[2:-2]
    assert re.findall(r"TXN[0-9A-Z]{12}", text) == [line[1] for line in lines]
    assert [line[0] for line in lines] == re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d", text)
    expected = [paise(as_csv[1][7])]
    for line in lines:
        expected += [paise(line[5] or line[6]), paise(line[7])]
    expected += [paise(as_csv[-2][5]), paise(as_csv[-2][6]), paise(as_csv[-1][7])]
    assert [paise(n) for n in re.findall(r"\d[\d,]*\.\d\d", text)] == expected
    assert text.index("Opening balance:") < text.index("Closing balance:")


def test_a_long_statement_pdf_numbers_every_page_of_the_total(alice, bob):
    fund(alice, 50_000_00)
    for _ in range(160):
        transfer_create(sender=alice, recipient=bob, amount=1_00)
    export = build(alice, fmt="pdf")

    reader = PdfReader(io.BytesIO(download(alice, export)[0]))
    total = len(reader.pages)
    assert total >= 3
    for number, page in enumerate(reader.pages, start=1):
        assert re.search(rf"Page {number}\s*of\s*{total}\b", page.extract_text())
    assert export.rows == 161
    # Written object by object, from pages spilled to disk: reportlab's own collector is back
    # in place afterwards, and the file is one well-formed PDF (one header, one trailer).
    assert pdfdoc.PDFFile is REPORTLAB_COLLECTOR
    content = download(alice, export)[0]
    assert content.startswith(b"%PDF-") and content.count(b"%PDF-") == 1
    assert content.rstrip().endswith(b"%%EOF") and content.count(b"startxref") == 1


def test_a_failed_pdf_save_leaves_reportlab_as_it_was(alice, monkeypatch):
    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(canvas.Canvas, "save", broken)
    response = request_export(alice, fmt="pdf")
    assert export_build(response.json()["id"]) == "failed"
    assert pdfdoc.PDFFile is REPORTLAB_COLLECTOR


def test_a_pdf_longer_than_the_limit_fails_in_words_and_a_csv_does_not(alice, history, settings):
    settings.QUICKPE_PDF_MAX_LINES = 2
    response = request_export(alice, fmt="pdf")

    assert export_build(response.json()["id"]) == "failed"
    export = client_for(alice).get(f"/api/v1/exports/{response.json()['id']}").json()
    assert export["status"] == "failed" and export["download_url"] is None
    assert "a PDF holds at most 2" in export["error"] and "CSV" in export["error"]
    assert build(alice, fmt="csv").rows > 2


def test_an_audit_trail_export_holds_only_the_callers_entries(alice, bob, history):
    export = build(alice, kind="audit")
    rows = csv_rows(download(alice, export)[0])

    assert rows[0] == ["seq", "time_ist", "action", "entity", "ip", "hash"]
    mine = AuditEntry.objects.filter(actor=alice).order_by("seq")
    assert [r[5] for r in rows[1:]] == [entry.hash for entry in mine]
    assert "export.create" in {r[2] for r in rows[1:]}


def test_requesting_an_export_queues_it_audits_it_and_announces_it(alice):
    response = request_export(alice, fmt="pdf", **{"from": "2026-11-01", "to": "2026-11-02"})

    assert response.status_code == 202
    body = response.json()
    assert body == {
        "id": body["id"],
        "kind": "statement",
        "format": "pdf",
        "status": "queued",
        "progress": 0,
        "rows": 0,
        "from": "2026-10-31T18:30:00.000000Z",
        "to": "2026-11-02T18:30:00.000000Z",
        "created_at": body["created_at"],
        "finished_at": None,
        "download_url": None,
        "error": None,
    }
    entry = AuditEntry.objects.get(action="export.create")
    assert (entry.actor_id, entry.entity_id) == (alice.pk, str(body["id"]))
    event = Event.objects.filter(user=alice, type="export:update").get()
    assert event.data == {"export": body}
    assert_problem(
        client_for(alice).get(f"/api/v1/exports/{body['id']}/download"), 409, "not_ready"
    )


def test_a_build_reports_progress_and_ends_with_a_notification(alice, history):
    export = build(alice, **NOVEMBER)

    updates = [
        e.data["export"]
        for e in Event.objects.filter(user=alice, type="export:update").order_by("seq")
    ]
    assert [u["status"] for u in updates][:2] == ["queued", "running"]
    assert updates[-1]["status"] == "done" and updates[-1]["progress"] == 100
    assert updates[-1]["download_url"] == f"/api/v1/exports/{export.pk}/download"
    progress = [u["progress"] for u in updates]
    assert progress == sorted(progress)
    notice = Notification.objects.get(user=alice, kind="export_ready")
    assert notice.data == {"export_id": export.pk}
    detail = client_for(alice).get(f"/api/v1/exports/{export.pk}").json()
    assert detail == updates[-1]
    listed = client_for(alice).get("/api/v1/exports").json()
    assert [item["id"] for item in listed["results"]] == [export.pk]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "payslip", "format": "pdf"},
        {"kind": "statement", "format": "docx"},
        {"kind": "statement"},
        {"format": "csv"},
        {"kind": "statement", "format": "csv", "from": "2026-11-30", "to": "2026-11-01"},
        {"kind": "statement", "format": "csv", "from": "2026-13-45"},
        {"kind": "statement", "format": "csv", "to": "yesterday"},
        {"kind": ["statement"], "format": "csv"},
        {"kind": "statement", "format": "csv", "from": 20261101},
        {"kind": "statement\u0000", "format": "csv"},
    ],
)
def test_a_bad_request_is_400_and_changes_nothing(alice, body):
    before = snapshot()
    response = client_for(alice).post("/api/v1/exports", body, format="json")
    assert_problem(response, 400, "validation_error")
    assert snapshot() == before
    assert not Export.objects.exists()


def test_another_users_export_is_404_on_every_endpoint(alice, bob, history):
    export = build(alice, **NOVEMBER)
    for path in [f"/api/v1/exports/{export.pk}", f"/api/v1/exports/{export.pk}/download"]:
        assert_problem(client_for(bob).get(path), 404, "not_found")
    assert client_for(bob).get("/api/v1/exports").json()["results"] == []
    assert_problem(client_for(None).get(f"/api/v1/exports/{export.pk}"), 401, "not_authenticated")


def test_a_claimed_job_cannot_be_claimed_again_while_its_worker_reports(alice, settings):
    export_id = request_export(alice).json()["id"]
    first = services.export_claim(export_id=export_id)
    assert first is not None and first.attempt == 1
    with pytest.raises(services.StillRunning) as running:
        services.export_claim(export_id=export_id)
    # It could be claimed once the worker has been silent for the stale limit, and not before.
    stale = settings.QUICKPE_EXPORT_STALE_SECONDS
    assert stale - 1 < running.value.seconds <= stale
    assert Export.objects.get(pk=export_id).attempt == 1


def test_a_task_that_finds_its_job_running_looks_again_a_few_times_then_gives_up(alice):
    export_id = request_export(alice).json()["id"]
    services.export_claim(export_id=export_id)
    # A redelivered task (its worker's pool process was killed) or a duplicate. In a worker
    # each look waits until the running worker's heartbeat would be stale
    # (tests/test_exports_worker.py); run eagerly here, the looks follow at once. A worker that
    # keeps reporting keeps its job, and the copy gives up.
    assert export_build.apply(args=[export_id]).get() == "running elsewhere"
    assert Export.objects.get(pk=export_id).attempt == 1
    # Once the worker has gone silent, a look claims the job.
    Export.objects.filter(pk=export_id).update(heartbeat_at=F("heartbeat_at") - timedelta(hours=1))
    assert export_build.apply(args=[export_id], retries=RUNNING_LOOKS - 1).get() == "done"
    assert Export.objects.get(pk=export_id).attempt == 2


def test_a_heartbeat_that_moves_nothing_tells_the_user_nothing(alice):
    export = services.export_claim(export_id=request_export(alice).json()["id"])
    updates = Event.objects.filter(user=alice, type="export:update")
    services.export_progress(export=export, done=5, total=10)
    announced = updates.count()
    services.export_progress(export=export, done=5, total=10)
    assert updates.count() == announced
    services.export_progress(export=export, done=6, total=10)
    assert updates.count() == announced + 1


def test_writing_a_pdf_out_keeps_the_heartbeat_going(alice, history):
    export = services.export_claim(export_id=request_export(alice, fmt="pdf").json()["id"])
    document = documents.document_for(export)
    counts = []
    documents.write_pdf(document, io.BytesIO(), counts.append)
    # Once per line, then again for every object of the file as it is written.
    assert counts[: document.total_rows] == list(range(1, document.total_rows + 1))
    assert counts[document.total_rows :].count(document.total_rows) > 10


def test_a_starting_worker_requeues_every_unfinished_export(alice, bob):
    queued = request_export(alice).json()["id"]
    running = request_export(bob).json()["id"]
    services.export_claim(export_id=running)
    done = build(alice).pk
    assert services.exports_resume() == [queued, running]
    assert services.exports_requeue_stale() == []  # none is stale yet
    assert Export.objects.get(pk=done).attempt == 1


def test_when_a_silent_workers_job_is_taken_over_only_one_file_is_kept(alice, _export_folder):
    export_id = request_export(alice).json()["id"]
    stalled = services.export_claim(export_id=export_id)
    # The first worker goes silent past the stale limit; the requeue job hands the export on.
    Export.objects.filter(pk=export_id).update(
        heartbeat_at=stalled.heartbeat_at - timedelta(hours=1)
    )
    assert services.exports_requeue_stale() == [export_id]
    assert export_build(export_id) == "done"
    # The stalled worker wakes up and tries to finish: its file is thrown away.
    assert services.export_finish(export=stalled, content=io.BytesIO(b"late"), rows=0) is False
    export = Export.objects.get(pk=export_id)
    assert (export.status, export.attempt) == ("done", 2)
    assert stored_files(_export_folder) == [export.file]
    assert Notification.objects.filter(kind="export_ready").count() == 1


def test_a_failed_build_says_why_and_can_be_requested_again(alice, monkeypatch):
    export_id = request_export(alice).json()["id"]

    def broken(export):
        raise ValueError("boom")

    monkeypatch.setattr("analytics.documents.document_for", broken)
    assert export_build(export_id) == "failed"
    failed = client_for(alice).get(f"/api/v1/exports/{export_id}").json()
    assert failed["status"] == "failed"
    assert "request it again" in failed["error"] and "boom" not in failed["error"]
    assert_problem(client_for(alice).get(f"/api/v1/exports/{export_id}/download"), 409, "not_ready")
    monkeypatch.undo()
    again = build(alice)
    assert again.status == "done"


def test_old_exports_and_their_files_are_purged(alice, history, _export_folder, settings):
    old, recent = build(alice, **NOVEMBER), build(alice, fmt="pdf", **NOVEMBER)
    Export.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=8))

    assert services.exports_purge() == 1

    assert list(Export.objects.values_list("pk", flat=True)) == [recent.pk]
    assert stored_files(_export_folder) == [recent.file]
    assert storages["exports"].exists(recent.file)


def test_exports_are_rate_limited_per_user(alice, settings):
    settings.QUICKPE_EXPORT_RATE = "2/h"
    assert request_export(alice).status_code == 202
    assert request_export(alice).status_code == 202
    before = snapshot()
    response = request_export(alice)
    assert_problem(response, 429, "rate_limited")
    assert snapshot() == before and Export.objects.count() == 2
    assert make_user("Other") and client_for(alice).get("/api/v1/exports").status_code == 200
