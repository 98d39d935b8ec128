"""What goes into an export (a statement or an audit trail) and how it is written (CSV or PDF).

A document is a title, facts (holder, period, opening balance), columns and a stream of rows
read through a server-side cursor, then closing facts (totals) known only once the rows are
through. The writers never hold more than one page of rows. The CSV goes straight to the file,
so its memory is flat however long the period.

The PDF's "page X of Y" uses a form drawn on every page and defined at the end, when Y is known.
reportlab keeps every finished page until it writes the file, and then builds the whole file in
memory before writing it. So that a statement's memory does not grow with its length, each
page's drawing is compressed as soon as the page is finished and spilled to a temporary file
(``_SpilledStream``), and the file is written object by object as reportlab formats it
(``_ObjectsToFile``); what stays in memory is reportlab's small bookkeeping per page.
bench/exports.py measures it.
"""

import csv
import io
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import time, timedelta

from django.conf import settings
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfdoc
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen import canvas

from analytics.models import Export
from audit.models import AuditEntry
from quickpe.business_day import business_time
from quickpe.money import format_inr, format_paise
from wallet.models import LedgerEntry, Wallet

CHUNK = 2000  # rows fetched per round trip of the server-side cursor


@dataclass(frozen=True)
class Column:
    title: str
    width: float  # points, in the PDF
    is_number: bool = False
    font: str = "Helvetica"


@dataclass
class Document:
    title: str
    facts: list[tuple[str, str]]
    columns: list[Column]
    total_rows: int
    # Each row twice: for the CSV (exact, machine-friendly) and for the PDF (for people).
    rows: Iterator[tuple[list[str], list[str]]]
    # Called once the rows are consumed: closing facts, and the CSV's closing rows.
    closing: Callable[[], tuple[list[tuple[str, str]], list[list[str]]]]
    csv_header: list[str]
    opening_rows: list[list[str]] = field(default_factory=list)
    # The CSV columns that hold numbers: written as they are, everything else as text
    # (``csv_text``). Decided by column, so that a negative amount stays a number.
    csv_numbers: frozenset[str] = frozenset()


def _local(moment) -> str:
    return business_time(moment).strftime("%Y-%m-%d %H:%M")


def period_label(export: Export) -> str:
    """The period in Asia/Kolkata time: whole days as "2026-11-01 to 2026-11-30" (the stored
    end is exclusive), anything else with times."""
    start, end = business_time(export.period_start), business_time(export.period_end)
    if start.time() == end.time() == time.min:
        return f"{start:%Y-%m-%d} to {end - timedelta(days=1):%Y-%m-%d}"
    return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} IST"


def _amount(paise: int) -> str:
    return format_inr(paise).replace("₹", "")  # the PDF's fonts have no rupee sign


def statement(export: Export) -> Document:
    user = export.user
    wallet = Wallet.objects.get(user=user)
    before = (
        LedgerEntry.objects.filter(wallet=wallet, created_at__lt=export.period_start)
        .order_by("-created_at", "-id")
        .values_list("balance_after", flat=True)
        .first()
    )
    opening = before or 0
    lines = LedgerEntry.objects.filter(
        wallet=wallet, created_at__gte=export.period_start, created_at__lt=export.period_end
    )
    totals = {"debit": 0, "credit": 0, "balance": opening}

    def rows():
        for entry in (
            lines.select_related("counterparty").order_by("created_at", "id").iterator(CHUNK)
        ):
            is_credit = entry.direction == LedgerEntry.Direction.CREDIT
            totals["credit" if is_credit else "debit"] += entry.amount
            totals["balance"] = entry.balance_after
            party = entry.counterparty
            when = _local(entry.created_at)
            name = party.get_full_name() if party else ""
            debit, credit = ("", entry.amount) if is_credit else (entry.amount, "")
            yield (
                [
                    when,
                    entry.reference,
                    entry.kind,
                    entry.description,
                    f"{name} ({party.quickpe_id})" if party else "",
                    format_paise(debit) if debit else "",
                    format_paise(credit) if credit else "",
                    format_paise(entry.balance_after),
                ],
                [
                    when,
                    entry.reference,
                    entry.description,
                    name,
                    _amount(debit) if debit else "",
                    _amount(credit) if credit else "",
                    _amount(entry.balance_after),
                ],
            )

    def closing():
        facts = [
            ("Total debits", _amount(totals["debit"])),
            ("Total credits", _amount(totals["credit"])),
            ("Closing balance", _amount(totals["balance"])),
        ]
        csv_rows = [
            [
                "",
                "",
                "",
                "Total",
                "",
                format_paise(totals["debit"]),
                format_paise(totals["credit"]),
                "",
            ],
            ["", "", "", "Closing balance", "", "", "", format_paise(totals["balance"])],
        ]
        return facts, csv_rows

    return Document(
        title="Account statement",
        facts=[
            ("Account holder", user.get_full_name()),
            ("QuickPe ID", user.quickpe_id),
            ("Period", period_label(export)),
            ("Currency", "INR"),
            ("Opening balance", _amount(opening)),
        ],
        columns=[
            Column("Date (IST)", 64),
            Column("Reference", 68, font="Courier"),  # fixed width: 15 characters always fit
            Column("Description", 125),
            Column("Counterparty", 80),
            Column("Debit", 58, is_number=True),
            Column("Credit", 58, is_number=True),
            Column("Balance", 70, is_number=True),
        ],
        total_rows=lines.count(),
        rows=rows(),
        closing=closing,
        csv_header=[
            "date_ist",
            "reference",
            "kind",
            "description",
            "counterparty",
            "debit",
            "credit",
            "balance",
        ],
        opening_rows=[["", "", "", "Opening balance", "", "", "", format_paise(opening)]],
        csv_numbers=frozenset({"debit", "credit", "balance"}),
    )


def _audit_document(export: Export, entries, *, title: str, facts, by_actor: bool) -> Document:
    """Audit entries in ``seq`` order; ``by_actor`` adds the actor's QuickPe ID (a whole-log
    export names who did each thing; a customer's own trail is all theirs)."""
    fields = ["seq", "created_at", "action", "entity_type", "entity_id", "ip", "hash"]
    if by_actor:
        fields.append("actor__quickpe_id")

    def rows():
        for seq, created_at, action, entity_type, entity_id, ip, digest, *actor in (
            entries.order_by("seq").values_list(*fields).iterator(CHUNK)
        ):
            when = _local(created_at)
            entity = f"{entity_type} {entity_id}".strip()
            who = [actor[0] or "-"] if by_actor else []
            yield (
                [str(seq), when, *who, action, entity, ip or "", digest],
                [str(seq), when, *who, action, entity, ip or "", digest[:24]],
            )

    actor_column = [Column("Actor", 62)] if by_actor else []
    narrow = 18 if by_actor else 0  # the actor column's room, taken from the others
    return Document(
        title=title,
        facts=[*facts, ("Period", period_label(export))],
        columns=[
            Column("Seq", 40),
            Column("Time (IST)", 64),
            *actor_column,
            Column("Action", 110 - narrow),
            Column("Entity", 90 - narrow),
            Column("IP", 80 - narrow),
            Column("Hash (first 24)", 139 - 62 + 3 * narrow if by_actor else 139, font="Courier"),
        ],
        total_rows=entries.count(),
        rows=rows(),
        closing=lambda: ([("Entries", str(entries.count()))], []),
        csv_header=[
            "seq",
            "time_ist",
            *(["actor"] if by_actor else []),
            "action",
            "entity",
            "ip",
            "hash",
        ],
        csv_numbers=frozenset({"seq"}),
    )


def audit_trail(export: Export) -> Document:
    """The customer's own audit entries (they are the actor) in the period."""
    user = export.user
    entries = AuditEntry.objects.filter(
        actor=user, created_at__gte=export.period_start, created_at__lt=export.period_end
    )
    facts = [("Account holder", user.get_full_name()), ("QuickPe ID", user.quickpe_id)]
    return _audit_document(export, entries, title="Audit trail", facts=facts, by_actor=False)


def audit_log(export: Export) -> Document:
    """Every user's audit entries in the period, for compliance staff."""
    entries = AuditEntry.objects.filter(
        created_at__gte=export.period_start, created_at__lt=export.period_end
    )
    facts = [("Requested by", f"{export.user.get_full_name()} ({export.user.quickpe_id})")]
    return _audit_document(export, entries, title="Audit log", facts=facts, by_actor=True)


_DOCUMENTS = {
    Export.Kind.STATEMENT: statement,
    Export.Kind.AUDIT: audit_trail,
    Export.Kind.AUDIT_LOG: audit_log,
}


def document_for(export: Export) -> Document:
    return _DOCUMENTS[export.kind](export)


class TooLong(Exception):
    """A PDF of more lines than QUICKPE_PDF_MAX_LINES: the message tells the customer why."""


def write(export: Export, document: Document, out, tick: "Tick") -> int:
    """Write the document in the export's format to ``out``; returns the lines written."""
    most = settings.QUICKPE_PDF_MAX_LINES
    if export.format == Export.Format.PDF and document.total_rows > most:
        raise TooLong(
            f"This period has {document.total_rows:,} lines and a PDF holds at most {most:,}. "
            "Please request a CSV, or a PDF of a shorter period."
        )
    writer = write_csv if export.format == Export.Format.CSV else write_pdf
    return writer(document, out, tick)


# --- writers -------------------------------------------------------------------------------

Tick = Callable[[int], None]


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(cell: str) -> str:
    """A text cell a spreadsheet will not run: one starting like a formula gets a leading
    quote (OWASP "CSV injection"), which spreadsheets show as text. Numbers never come here."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def write_csv(document: Document, out, tick: Tick) -> int:
    """UTF-8 CSV with a header row; returns the number of lines written (rows of the period).
    Every cell outside ``document.csv_numbers`` is text and goes through ``csv_text``."""
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    writer = csv.writer(text)
    is_text = [name not in document.csv_numbers for name in document.csv_header]

    def write(row: list[str]) -> None:
        cells = zip(row, is_text, strict=True)
        writer.writerow([csv_text(cell) if text else cell for cell, text in cells])

    writer.writerow(document.csv_header)
    for row in document.opening_rows:
        write(row)
    count = 0
    for csv_row, _pdf_row in document.rows:
        write(csv_row)
        count += 1
        tick(count)
    _facts, closing_rows = document.closing()
    for row in closing_rows:
        write(row)
    text.flush()
    text.detach()  # leave ``out`` open for the caller
    return count


MARGIN = 36
FONT, BOLD = "Helvetica", "Helvetica-Bold"
SIZE, ROW = 7.5, 11
FOOTER_Y = MARGIN - 14
PAGE_ANCHOR = A4[0] - MARGIN - 30


def _fit(text: str, width: float, font: str = FONT, size: float = SIZE) -> str:
    """The text in the PDF's font encoding, cut with an ellipsis to fit ``width`` points."""
    text = text.encode("cp1252", "replace").decode("cp1252")  # what Helvetica can draw
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "...", font, size) > width:
        text = text[:-1]
    return text + "..."


class _SpilledStream(pdfdoc.PDFStream):
    """A finished page's compressed drawing, kept in a temporary file until reportlab formats
    it into the PDF."""

    def __init__(self, spill, data: bytes):
        self.dictionary = pdfdoc.PDFDictionary({"Filter": pdfdoc.PDFName("FlateDecode")})
        self.filters = None
        self.spill, self.at, self.length = spill, spill.seek(0, io.SEEK_END), len(data)
        spill.write(data)

    @property
    def content(self) -> bytes:
        self.spill.seek(self.at)
        return self.spill.read(self.length)


class _ObjectsToFile(pdfdoc.PDFFile):
    """reportlab's output collector, writing each object to ``target`` as soon as it is
    formatted rather than keeping them all to join at the end, and calling ``written`` after
    each: writing a long statement takes seconds, and the build's heartbeat must go on."""

    target = None  # the file being written; set by _save_straight_to
    written = None  # called after each object

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # adds the header to self.strings
        header, self.strings = b"".join(self.strings), []
        self.write = self._write
        self.write(header)

    def _write(self, data: bytes) -> None:
        self.target.write(data)
        self.written()

    def format(self, document) -> bytes:
        return b""  # everything is in the file already


# reportlab makes its collector inside PDFDocument.format(); swapping the class in while one
# document is saved is the only way in, and a lock keeps two saves in one process apart.
_SAVING = threading.Lock()


def _save_straight_to(pdf: canvas.Canvas, out, written: Callable[[], None]) -> None:
    with _SAVING:
        collector, pdfdoc.PDFFile = pdfdoc.PDFFile, _ObjectsToFile
        _ObjectsToFile.target, _ObjectsToFile.written = out, staticmethod(written)
        try:
            pdf.save()  # writes b"" at the end: the collector wrote the rest
        finally:
            pdfdoc.PDFFile = collector
            _ObjectsToFile.target = _ObjectsToFile.written = None


class _PdfWriter:
    def __init__(self, document: Document, out, spill):
        self.document = document
        self.out = out
        self.spill = spill  # finished pages' drawings until the file is written
        self.canvas = canvas.Canvas(out, pagesize=A4, pageCompression=1)
        self.canvas.setTitle(f"QuickPe {document.title}")
        self.canvas.setAuthor("QuickPe")
        self.width, self.height = A4
        self.page = 0
        self.y = 0.0

    def _footer(self):
        # "Page X" ends at a fixed point, " of " follows, then the total drawn by a form that
        # is defined only at the end, when the number of pages is known.
        c = self.canvas
        c.setFont(FONT, 7)
        c.drawString(MARGIN, FOOTER_Y, f"QuickPe · {self.document.title}")
        c.drawRightString(PAGE_ANCHOR, FOOTER_Y, f"Page {self.page}")
        c.drawString(PAGE_ANCHOR, FOOTER_Y, " of ")
        c.doForm("page_count")

    def _show_page(self):
        """Finish the page, compress its drawing and spill it to disk now: reportlab would keep
        the text in memory until the file is written and only then compress it. A stream whose
        dictionary already names its filter is written as it is."""
        self.canvas.showPage()
        page = self.canvas._doc.Pages.pages[-1]
        if page.stream:
            page.Contents = _SpilledStream(self.spill, zlib.compress(page.stream.encode("latin-1")))
            page.stream = None

    def _new_page(self):
        if self.page:
            self._footer()
            self._show_page()
        self.page += 1
        self.y = self.height - MARGIN
        if self.page == 1:
            self._first_header()
        self._column_header()

    def _first_header(self):
        c = self.canvas
        c.setFillColorRGB(0.13, 0.2, 0.55)
        c.setFont(BOLD, 20)
        c.drawString(MARGIN, self.y - 18, "QuickPe")
        c.setFillColorRGB(0, 0, 0)
        c.setFont(BOLD, 12)
        c.drawString(MARGIN, self.y - 36, self.document.title)
        self.y -= 52
        self._facts(self.document.facts)
        self.y -= 6

    def _facts(self, facts):
        c = self.canvas
        for label, value in facts:
            c.setFont(BOLD, 8.5)
            c.drawString(MARGIN, self.y, f"{label}:")
            c.setFont(FONT, 8.5)
            c.drawString(MARGIN + 90, self.y, _fit(value, 400, FONT, 8.5))
            self.y -= 12

    def _column_header(self):
        c = self.canvas
        c.setFont(BOLD, SIZE)
        self._cells([column.title for column in self.document.columns], font=BOLD)
        c.line(MARGIN, self.y + ROW - 3, self.width - MARGIN, self.y + ROW - 3)
        c.setFont(FONT, SIZE)

    def _cells(self, values: list[str], font: str | None = None):
        c = self.canvas
        x = MARGIN
        for column, value in zip(self.document.columns, values, strict=True):
            cell_font = font or column.font
            size = SIZE if cell_font != "Courier" else SIZE - 0.5
            text = _fit(value, column.width - 4, cell_font, size)
            c.setFont(cell_font, size)
            if column.is_number:
                c.drawRightString(x + column.width - 2, self.y, text)
            else:
                c.drawString(x, self.y, text)
            x += column.width
        self.y -= ROW

    def write(self, tick: Tick) -> int:
        self._new_page()
        count = 0
        for _csv_row, pdf_row in self.document.rows:
            if self.y < MARGIN + ROW:
                self._new_page()
            self._cells(pdf_row)
            count += 1
            tick(count)
        facts, _csv_rows = self.document.closing()
        if self.y < MARGIN + 12 * (len(facts) + 2):
            self._new_page()
        self.y -= 8
        self._facts(facts)
        self._footer()
        self._show_page()
        self.canvas.beginForm("page_count")
        self.canvas.setFont(FONT, 7)
        self.canvas.drawString(PAGE_ANCHOR + stringWidth(" of ", FONT, 7), FOOTER_Y, str(self.page))
        self.canvas.endForm()
        # Writing the file reports the same count again: the heartbeat, not progress.
        _save_straight_to(self.canvas, self.out, lambda: tick(count))
        return count


def write_pdf(document: Document, out, tick: Tick) -> int:
    with tempfile.TemporaryFile() as spill:
        return _PdfWriter(document, out, spill).write(tick)
