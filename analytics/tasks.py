import logging
import tempfile
import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import OperationalError

from analytics import documents
from analytics.models import Export
from analytics.services import (
    StillRunning,
    Superseded,
    export_claim,
    export_fail,
    export_finish,
    export_progress,
    exports_purge,
    exports_requeue_stale,
    exports_resume,
)
from quickpe import metrics
from quickpe.db import statement_timeout

logger = logging.getLogger(__name__)
REPORT_EVERY_SECONDS = 1.0  # progress events (and the heartbeat) at most this often...
REPORT_EVERY_PERCENT = 5  # ...or at every 5%
# How many times a task that found its job running looks again, each time just after the
# running worker's heartbeat would have gone stale: a killed worker's job is claimed at the
# first look; a live worker keeps reporting, and the copy gives up.
RUNNING_LOOKS = 3


class _Progress:
    def __init__(self, export: Export, total: int):
        self.export, self.total = export, total
        self.reported_at, self.reported_percent = time.monotonic(), 0

    def __call__(self, done: int) -> None:
        percent = done * 100 // self.total if self.total else 0
        now = time.monotonic()
        if (
            percent - self.reported_percent >= REPORT_EVERY_PERCENT
            or now - self.reported_at >= REPORT_EVERY_SECONDS
        ):
            export_progress(export=self.export, done=done, total=self.total)
            self.reported_at, self.reported_percent = now, percent


@shared_task(
    bind=True,
    name="analytics.export_build",
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=3,
)
def export_build(self, export_id: int) -> str:
    """Build one export, if this worker can claim it (idempotent: a duplicate or redelivered
    task finds it done and does nothing, or running and looks again once the running worker
    would be silent for QUICKPE_EXPORT_STALE_SECONDS)."""
    # The web's statement limit (30 s) is for requests; a long statement legitimately reads longer.
    with statement_timeout(settings.QUICKPE_EXPORT_STATEMENT_TIMEOUT_MS):
        try:
            return _export_build(export_id)
        except StillRunning as running:
            if self.request.retries >= RUNNING_LOOKS:
                return "running elsewhere"
            # A second past the moment the claim could take it, so one look is enough.
            raise self.retry(countdown=running.seconds + 1, max_retries=RUNNING_LOOKS) from None


def _export_build(export_id: int) -> str:
    export = export_claim(export_id=export_id)
    if export is None:
        return "not claimed"
    started = time.monotonic()
    try:
        document = documents.document_for(export)
        # An anonymous file: it vanishes with this process if the worker is killed mid-build.
        with tempfile.TemporaryFile() as content:
            rows = documents.write(
                export, document, content, _Progress(export, document.total_rows)
            )
            content.seek(0)
            finished = export_finish(export=export, content=content, rows=rows)
        if finished:
            metrics.EXPORT_SECONDS.labels(export.format).observe(time.monotonic() - started)
        return "done" if finished else "superseded"
    except Superseded:
        return "superseded"
    except documents.TooLong as error:
        export_fail(export=export, error=str(error))
        return "failed"
    except OperationalError:
        raise  # the database went away: retried by Celery, and the claim goes stale meanwhile
    except Exception:
        logger.exception("export %s failed", export_id)
        export_fail(
            export=export,
            error="The file could not be built because of an error on our side. "
            "Please request it again.",
        )
        return "failed"


@shared_task(name="analytics.exports_requeue_stale")
def exports_requeue_stale_task() -> list[int]:
    return exports_requeue_stale()


@shared_task(name="analytics.exports_resume")
def exports_resume_task() -> list[int]:
    return exports_resume()


@shared_task(name="analytics.exports_purge")
def exports_purge_task() -> int:
    return exports_purge()


@worker_ready.connect
def _resume_exports_when_a_worker_starts(**_):
    """When a worker starts (after a crash, a kill, a deploy), the exports left unfinished get
    a task at once rather than at the next minute's requeue of stale ones. Celery's
    ``worker_ready`` is the one notice a worker gets that it has (re)started."""
    exports_resume_task.delay()
