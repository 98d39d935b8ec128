"""The Celery app: Redis broker, tasks discovered in each app's ``tasks.py``."""

import os
import time

from celery import Celery
from celery.signals import before_task_publish, task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")

app = Celery("quickpe")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from quickpe import metrics  # noqa: E402 - after the settings module is named
from quickpe.logs import get_logger, request_id  # noqa: E402

# Every task: one log line and the outcome counter; the request id of whatever queued it rides
# along in the message headers, so its logs join the request's.
_started: dict[str, float] = {}


@before_task_publish.connect
def _carry_request_id(headers=None, **_):
    current = request_id.get()
    if current and headers is not None:
        headers.setdefault("request_id", current)


@task_prerun.connect
def _task_started(task_id=None, task=None, **_):
    request_id.set(getattr(task.request, "request_id", None) or task_id)
    _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_):
    seconds = time.monotonic() - _started.pop(task_id, time.monotonic())
    outcome = (state or "unknown").lower()
    metrics.TASKS.labels(task.name, outcome).inc()
    get_logger("quickpe.tasks").info(
        "task", task=task.name, outcome=outcome, duration_ms=round(seconds * 1000, 1)
    )
    request_id.set(None)
