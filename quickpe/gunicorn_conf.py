"""gunicorn settings for every QuickPe web process (`make run`, the tests' stacks, benchmarks,
deploy/): ``gunicorn -c python:quickpe.gunicorn_conf quickpe.wsgi:application``. Command-line
flags (bind, workers) still apply on top."""

import os

# A request that takes longer than this is a bug or a stuck dependency: the worker is killed
# and replaced (its transaction is rolled back by PostgreSQL when the connection drops). The
# database's limits act first: the statement timeout (DATABASE_STATEMENT_TIMEOUT_MS) ends slow
# queries, and the idle-transaction timeout (DATABASE_IDLE_TRANSACTION_TIMEOUT_MS, 10 s) frees
# the rows a frozen worker holds long before this kills it.
timeout = int(os.environ.get("WEB_TIMEOUT", "30"))
# SIGTERM: stop accepting, let in-flight requests (and their transactions) finish for this long.
graceful_timeout = int(os.environ.get("WEB_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
# gunicorn's own refusals (request line or headers over its limits, unparseable requests)
# answer problem+json like the app, not an HTML page.
worker_class = "quickpe.gunicorn_worker.ProblemSyncWorker"
# Recycle workers now and then, at different moments, so slow leaks never add up.
max_requests = 5000
max_requests_jitter = 500


def child_exit(server, worker):
    """Prometheus multiprocess mode: a dead worker's live gauges stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
