"""Exports: requested by a user, built by a Celery worker, kept for a week.

A worker claims a job with a conditional UPDATE (queued, or running with a silent worker) that
bumps ``attempt``; progress and completion are conditional on that attempt, so when a job is
handed to a second worker (the first died or stalled) only one of them can finish it and the
other throws its file away. Files are written to an anonymous temporary file first and saved to
storage only when complete, so a killed worker leaves nothing behind.
"""

from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import storages
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from analytics.models import Export
from analytics.representations import export_data
from audit.services import audit_append
from notifications.models import Notification
from notifications.services import events_emit, notifications_create
from quickpe.errors import NotAllowed, QuickPeError
from quickpe.jobs import dispatch_after_commit
from quickpe.text import fit
from quickpe.unit_of_work import unit_of_work

_CLAIM = """
    UPDATE analytics_export
    SET status = 'running', attempt = attempt + 1, started_at = now(), heartbeat_at = now(),
        progress = 0, rows = 0, error = ''
    WHERE id = %s AND (
        status = 'queued'
        OR (status = 'running' AND heartbeat_at < now() - make_interval(secs => %s))
    )
    RETURNING attempt
"""
# For a job the claim did not take: how long until its worker's silence makes it claimable,
# by the database's clock, as the claim measures it.
_STALE_IN = """
    SELECT GREATEST(0, EXTRACT(EPOCH FROM heartbeat_at + make_interval(secs => %s) - now()))
    FROM analytics_export WHERE id = %s AND status = 'running'
"""
# A queued job whose task has not started after this long probably lost it (say, Redis was
# down when it was queued). Longer than the stale limit: a task may wait its turn behind others.
QUEUED_GRACE = timedelta(minutes=2)


class NotReady(QuickPeError):
    status, code = 409, "not_ready"
    default_detail = "The export is not ready yet."


class Superseded(Exception):
    """This worker's attempt is no longer the current one (another worker took the job)."""


class StillRunning(Exception):
    """The job is running and its worker reported less than QUICKPE_EXPORT_STALE_SECONDS ago:
    that worker is alive, or was killed a moment ago. Its heartbeat tells which: look again in
    ``seconds``, when the job can be claimed if it has gone silent."""

    def __init__(self, export_id: int, seconds: float):
        super().__init__(export_id, seconds)
        self.seconds = seconds


def exports_storage():
    return storages["exports"]


def _announce(export: Export, *extra_events) -> None:
    events_emit(
        {export.user_id: [("export:update", {"export": export_data(export)}), *extra_events]}
    )


@unit_of_work
def export_create(
    *, user, kind: str, format: str, period_start, period_end, request=None
) -> Export:
    """Queue an export and audit it; the build is dispatched to a worker after commit.
    Locks: the audit chain head, then the user's event stream."""
    export = Export.objects.create(
        user=user, kind=kind, format=format, period_start=period_start, period_end=period_end
    )
    entry = audit_append(
        actor=user,
        action="export.create",
        entity_type="export",
        entity_id=export.pk,
        data={
            "kind": kind,
            "format": format,
            "from": export_data(export)["from"],
            "to": export_data(export)["to"],
        },
        request=request,
    )
    events_emit({user.pk: [("export:update", {"export": export_data(export)})]}, audit=[entry])
    from analytics.tasks import export_build  # tasks import services

    dispatch_after_commit(export_build, export.pk)
    return export


def audit_log_export_create(*, actor, format: str, period_start, period_end, request=None):
    """Queue an export of every user's audit entries in the period for a staff member with
    ``audit.export_log`` (the compliance group). Built and audited like any export; only its
    requester can download it (from the admin)."""
    if not (actor.is_active and actor.is_staff and actor.has_perm("audit.export_log")):
        raise NotAllowed("Exporting the audit log needs the audit.export_log permission.")
    return export_create(
        user=actor,
        kind=Export.Kind.AUDIT_LOG,
        format=format,
        period_start=period_start,
        period_end=period_end,
        request=request,
    )


@unit_of_work
def export_claim(*, export_id: int) -> Export | None:
    """Take the job for this worker: queued, or running with no word from its worker for
    QUICKPE_EXPORT_STALE_SECONDS. None when there is nothing to build (done, failed, gone).
    Raises StillRunning when another worker reported on it recently: a duplicate task, or
    the redelivery of one whose worker was just killed."""
    stale_seconds = settings.QUICKPE_EXPORT_STALE_SECONDS
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, [export_id, stale_seconds])
        claimed = cursor.fetchone()
        if claimed is None:
            cursor.execute(_STALE_IN, [stale_seconds, export_id])
            running = cursor.fetchone()
    if claimed is None:
        if running is not None:
            raise StillRunning(export_id, float(running[0]))
        return None
    export = Export.objects.select_related("user").get(pk=export_id)
    _announce(export)
    return export


def _update_current(export: Export, **fields) -> None:
    """Write fields only while ``export.attempt`` is still the current attempt."""
    updated = Export.objects.filter(
        pk=export.pk, attempt=export.attempt, status=Export.Status.RUNNING
    ).update(**fields)
    if not updated:
        raise Superseded(export.pk)
    for name, value in fields.items():
        setattr(export, name, value)


@unit_of_work
def export_progress(*, export: Export, done: int, total: int) -> None:
    """Report progress, which is also the heartbeat that keeps the job ours; the user hears
    of it only when it moved (not while the finished rows are written out). Raises
    Superseded."""
    progress = min(99, done * 100 // total) if total else 0
    has_moved = (progress, done) != (export.progress, export.rows)
    _update_current(export, progress=progress, rows=done, heartbeat_at=timezone.now())
    if has_moved:
        _announce(export)


def export_finish(*, export: Export, content, rows: int) -> bool:
    """Store the built file and mark the export done, telling the user. If another attempt has
    taken over meanwhile, the file is deleted and False returned. The file is written before
    the unit of work: no file I/O while rows are locked."""
    storage = exports_storage()
    name = storage.save(
        f"{export.user_id}/{export.kind}-{export.pk}-{export.attempt}.{export.format}",
        File(content),
    )
    try:
        _export_done(export=export, name=name, rows=rows)
    except Superseded:
        storage.delete(name)
        return False
    return True


@unit_of_work
def _export_done(*, export: Export, name: str, rows: int) -> None:
    _update_current(
        export,
        status=Export.Status.DONE,
        progress=100,
        rows=rows,
        file=name,
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    [notice] = notifications_create(
        [
            Notification(
                user=export.user,
                kind=Notification.Kind.EXPORT_READY,
                title=f"Your {export.get_kind_display().lower()} "
                f"({export.format.upper()}) is ready",
                body=f"{rows} lines. Download it within "
                f"{settings.QUICKPE_EXPORT_RETENTION_DAYS} days.",
                data={"export_id": export.pk},
            )
        ]
    )
    _announce(export, notice[1])


@unit_of_work
def export_fail(*, export: Export, error: str) -> None:
    """End the attempt as failed with a message the user can read; they may ask again."""
    try:
        _update_current(
            export,
            status=Export.Status.FAILED,
            error=fit(Export, "error", error),
            finished_at=timezone.now(),
        )
    except Superseded:
        return
    _announce(export)


def exports_requeue_stale() -> list[int]:
    """Jobs whose worker went silent (killed, lost) go back to the queue with a new task; the
    claim decides which single worker builds each. Returns the ids requeued."""
    now = timezone.now()
    silent = Q(
        status=Export.Status.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=settings.QUICKPE_EXPORT_STALE_SECONDS),
    )
    never_started = Q(status=Export.Status.QUEUED, created_at__lt=now - QUEUED_GRACE)
    return _requeue(Export.objects.filter(silent | never_started))


def exports_resume() -> list[int]:
    """Every unfinished job gets a new task, for a worker that has just started: a whole
    worker killed mid-build leaves its task with the broker, which hands it out again only
    after an hour (Redis' visibility timeout). A job still alive elsewhere is left to its
    worker by the claim. Returns the ids requeued."""
    unfinished = [Export.Status.QUEUED, Export.Status.RUNNING]
    return _requeue(Export.objects.filter(status__in=unfinished))


def _requeue(exports) -> list[int]:
    from analytics.tasks import export_build

    export_ids = list(exports.order_by("pk").values_list("pk", flat=True))
    for export_id in export_ids:
        export_build.delay(export_id)
    return export_ids


def exports_purge() -> int:
    """Delete exports (and their files) older than QUICKPE_EXPORT_RETENTION_DAYS."""
    cutoff = timezone.now() - timedelta(days=settings.QUICKPE_EXPORT_RETENTION_DAYS)
    storage = exports_storage()
    purged = 0
    for export in Export.objects.filter(created_at__lt=cutoff).only("pk", "file"):
        if export.file:
            storage.delete(export.file)
        export.delete()
        purged += 1
    return purged
