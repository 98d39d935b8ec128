"""Background work is queued only after the transaction that asked for it commits, so a worker
never looks for a row that is not there yet (or never will be, after a rollback)."""

from django.db import transaction


def dispatch_after_commit(task, *args, **kwargs) -> None:
    transaction.on_commit(lambda: task.delay(*args, **kwargs))
