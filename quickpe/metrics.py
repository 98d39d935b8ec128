"""Prometheus metrics, and ``/metrics`` to read them.

Several processes serve QuickPe (gunicorn workers, daphne, Celery workers). With
``PROMETHEUS_MULTIPROC_DIR`` set (``make run`` and the deploy units set it), each process writes
its numbers to files there and ``/metrics`` adds them up across processes (prometheus_client's
multiprocess mode; gauges of live things sum over live processes only). Without it, each
process reports only its own numbers.

``/metrics`` answers requests from QUICKPE_METRICS_ALLOWED_IPS (loopback by default) or with
``Authorization: Bearer <QUICKPE_METRICS_TOKEN>``; anyone else gets a 404 problem.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from quickpe.errors import PROBLEM_CONTENT_TYPE, problem_body
from quickpe.logs import get_logger
from quickpe.money import format_paise
from quickpe.request_meta import client_ip

_money_log = get_logger("quickpe.money")

REQUESTS = Counter(
    "quickpe_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "quickpe_http_request_duration_seconds",
    "Time to answer an HTTP request, by route",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MOVEMENTS = Counter(
    "quickpe_money_movements_total",
    "Money movements by kind (transfer, money_request_pay, deposit, withdrawal, reversal) and "
    "outcome (ok, or the refusal's code)",
    ["kind", "outcome"],
)
REPLAYS = Counter("quickpe_idempotent_replays_total", "Requests answered from their key")
LOCK_RETRIES = Counter(
    "quickpe_lock_retries_total",
    "Transactions run again after a deadlock or serialization failure",
    ["reason"],
)
WEBSOCKETS = Gauge(
    "quickpe_websocket_connections", "Open event-stream connections", multiprocess_mode="livesum"
)
EVENTS_PUSHED = Counter("quickpe_events_pushed_total", "Event frames sent to clients live")
EVENTS_REPLAYED = Counter("quickpe_events_replayed_total", "Event frames sent on a resume")
TASKS = Counter("quickpe_celery_tasks_total", "Celery tasks run", ["task", "outcome"])
EXPORT_SECONDS = Histogram(
    "quickpe_export_build_seconds",
    "Time to build an export",
    ["format"],
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
DB_CONNECTIONS = Gauge(
    "quickpe_db_connections_open",
    "Database connections held open between requests by web workers",
    multiprocess_mode="livesum",
)


def movement_committed(*, kind: str, reference: str, amount: int, wallets: list[int]) -> None:
    """A money movement committed: one log line and the counter (refusals: ``refused``)."""
    MOVEMENTS.labels(kind, "ok").inc()
    _money_log.info(
        "money.movement",
        kind=kind,
        reference=reference,
        amount=format_paise(amount),
        wallets=wallets,
        outcome="ok",
    )


def refused(*, kind: str, code: str, user: int | None = None) -> None:
    """A money request refused by a rule (insufficient funds, a limit, ...): nothing moved."""
    MOVEMENTS.labels(kind, code).inc()
    _money_log.info("money.movement", kind=kind, outcome=code, user=user)


def observe_database() -> None:
    """After a request: does this worker keep a connection open (CONN_MAX_AGE)?"""
    DB_CONNECTIONS.set(sum(1 for c in connections.all(initialized_only=True) if c.connection))


def _allowed(request) -> bool:
    token = settings.QUICKPE_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(header.encode(), f"Bearer {token}".encode()):
        return True
    address = client_ip(request)
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in settings.QUICKPE_METRICS_ALLOWED_NETWORKS)


def metrics_view(request):
    if not _allowed(request):
        body = problem_body(404, "not_found", "Not found.")
        return JsonResponse(body, status=404, content_type=PROBLEM_CONTENT_TYPE)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
