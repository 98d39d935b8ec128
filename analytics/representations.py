"""The public JSON shape of an export, for the REST API and ``export:update`` events."""

from django.urls import reverse

from analytics.models import Export
from quickpe.formats import timestamp


def export_data(export: Export) -> dict:
    is_done = export.status == Export.Status.DONE
    return {
        "id": export.pk,
        "kind": export.kind,
        "format": export.format,
        "status": export.status,
        "progress": export.progress,
        "rows": export.rows,
        "from": timestamp(export.period_start),
        "to": timestamp(export.period_end),
        "created_at": timestamp(export.created_at),
        "finished_at": timestamp(export.finished_at) if export.finished_at else None,
        "download_url": reverse("export-download", args=[export.pk]) if is_done else None,
        "error": export.error or None,
    }
