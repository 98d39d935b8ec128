"""Background work is queued only after the transaction that asked for it commits, so a worker
never looks for a row that is not there yet (or never will be, after a rollback)."""

from django.db import transaction


def dispatch_after_commit(task, *args, **kwargs) -> None:
    # robust: the change has committed; a broker outage must not turn its response into a 500.
    # The failure is logged, and periodic jobs pick up what was left undone (exports requeue).
    transaction.on_commit(lambda: task.delay(*args, **kwargs), robust=True)
