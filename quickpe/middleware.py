"""Middleware of every HTTP request: its id, its log line and its metrics; never cached."""

import time

from django.utils.cache import add_never_cache_headers

from quickpe import metrics
from quickpe.logs import REQUEST_ID_HEADER, get_logger, request_id, valid_request_id

logger = get_logger("quickpe.requests")


class RequestObservation:
    """Accept the client's X-Request-ID (or make one), carry it through this request's logs,
    tasks and events, return it, and record one log line and the request metrics. The line
    names the route, never the path with its query string (searches, tokens)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = valid_request_id(request.headers.get(REQUEST_ID_HEADER))
        reset = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            duration = time.perf_counter() - started
            match = request.resolver_match
            route = match.view_name if match else "unmatched"
            if route != "metrics":
                metrics.REQUESTS.labels(request.method, route, response.status_code).inc()
                metrics.LATENCY.labels(route).observe(duration)
                metrics.observe_database()
            user = getattr(request, "user", None)
            logger.info(
                "request",
                method=request.method,
                route=route,
                status=response.status_code,
                duration_ms=round(duration * 1000, 1),
                user=user.pk if user is not None and user.is_authenticated else None,
            )
            response[REQUEST_ID_HEADER] = rid
            return response
        finally:
            request_id.reset(reset)


class NotStored:
    """Every answer Django makes (pages, API answers, downloads) shows someone's balance,
    ledger, statements or personal data, or may: ``Cache-Control: no-store`` (and private), so
    no shared cache or back button keeps it. Static files are served before this (whitenoise)
    and keep their caching."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        add_never_cache_headers(response)
        return response
