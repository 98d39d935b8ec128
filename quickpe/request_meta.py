"""Who is on the other end of a request: client IP and user agent, read in one place."""

from django.conf import settings

_MAX_USER_AGENT = 512


def client_ip(request) -> str | None:
    """REMOTE_ADDR, or the address our own proxies saw when QUICKPE_TRUSTED_PROXIES > 0.

    Only the right-most hops that our proxies appended are trusted; anything further left of
    X-Forwarded-For is whatever the client chose to send.
    """
    meta = getattr(request, "META", {})
    proxies = settings.QUICKPE_TRUSTED_PROXIES
    forwarded = meta.get("HTTP_X_FORWARDED_FOR")
    if proxies and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return hops[-min(proxies, len(hops))]
    return meta.get("REMOTE_ADDR") or None


def user_agent(request) -> str:
    return getattr(request, "META", {}).get("HTTP_USER_AGENT", "")[:_MAX_USER_AGENT]
