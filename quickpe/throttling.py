"""Rate limits shared by every process through Redis (sliding window, atomic in Lua).

DRF's stock throttles read-modify-write a cached list, so two workers can both let a request
through; here the check and the hit are one Redis script, so a limit holds across processes.
A rejected request is not counted, and it is rejected before the view runs, so it changes nothing.
"""

import hashlib
import uuid

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from quickpe.redis import get_redis, unless_broken
from quickpe.request_meta import client_ip

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1] = window key; ARGV = limit, period_ms, member. Returns {allowed, wait_ms}.
_SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - period)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], period)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + period - now}
"""


def parse_rate(rate: str) -> tuple[int, int]:
    count, unit = rate.split("/")
    return int(count), _PERIODS[unit[0]]


def hit(key: str, rate: str) -> float | None:
    """Count one hit against ``key``; None if allowed, else seconds until the next is allowed."""
    limit, period = parse_rate(rate)
    script = get_redis().register_script(_SLIDING_WINDOW)
    allowed, wait_ms = script(
        keys=[f"{settings.QUICKPE_REDIS_PREFIX}:rate:{key}"],
        args=[limit, period * 1000, uuid.uuid4().hex],
    )
    return None if allowed else max(int(wait_ms), 1) / 1000


def wait_for(scope: str, identity: str, rate: str | None) -> float | None:
    """Count one hit of ``identity`` against ``scope``'s ``rate``: None if allowed (or if there
    is no rate), else seconds until the next is allowed. Fails open: with Redis down or hung,
    money still moves (the limits on amounts hold in PostgreSQL); only the rate limit lapses
    until Redis is back, and after one failure this process stops asking for a few seconds
    (``quickpe.redis``, which logs the outage once)."""
    if rate is None:
        return None
    return unless_broken(settings.REDIS_URL, lambda: hit(f"{scope}:{identity}", rate))


class SharedRateThrottle(BaseThrottle):
    """Subclasses name the setting holding the rate and how to identify the caller."""

    rate_setting = ""
    scope = ""

    def __init__(self):
        self._wait: float | None = None

    def identity(self, request, view) -> str | None:
        raise NotImplementedError

    def allow_request(self, request, view) -> bool:
        identity = self.identity(request, view)
        if identity is None:
            return True
        self._wait = wait_for(self.scope, identity, getattr(settings, self.rate_setting))
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class MoneyRateThrottle(SharedRateThrottle):
    """Per user and per money endpoint: ``QUICKPE_MONEY_RATE`` (default 10/m)."""

    rate_setting = "QUICKPE_MONEY_RATE"
    scope = "money"

    def identity(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return f"{view.throttle_scope}:{request.user.pk}"


def account_identity(email: object) -> str | None:
    """The key of an account's password-guess budget: its normalised email, hashed so Redis
    never holds an email address. JSON can carry a lone surrogate, which has no UTF-8:
    "surrogatepass" hashes it anyway, and the serializer refuses it (400)."""
    if not isinstance(email, str) or not email.strip():
        return None
    key = email.strip().lower().encode("utf-8", "surrogatepass")
    return hashlib.sha256(key).hexdigest()[:32]


def _guessed_email(request) -> object:
    return request.data.get("email") if hasattr(request.data, "get") else None


def _from_this_address(account: str | None, request) -> str | None:
    return None if account is None else f"{account}:{client_ip(request)}"


class SigninAccountThrottle(SharedRateThrottle):
    """Per account and client address: ``QUICKPE_SIGNIN_RATE`` (default 5/m). One budget of
    password guesses per account and address, spent by every door that checks the password:
    the API's and the dashboard's sign-in, the admin's login and the current password of a
    change. Keyed by the pair, so someone guessing from their address does not lock the owner
    out of theirs; ``SigninAccountWideThrottle`` bounds guesses spread over many addresses."""

    rate_setting = "QUICKPE_SIGNIN_RATE"
    scope = "signin-account"

    def identity(self, request, view):
        return _from_this_address(account_identity(_guessed_email(request)), request)


class SigninAccountWideThrottle(SharedRateThrottle):
    """Per account, from every address together: ``QUICKPE_SIGNIN_ACCOUNT_RATE`` (default
    30/m), softer than the per-address budget, so one address can never spend it alone: only
    guessing spread over many addresses (which this stops) can keep the owner out."""

    rate_setting = "QUICKPE_SIGNIN_ACCOUNT_RATE"
    scope = "signin-account-wide"

    def identity(self, request, view):
        return account_identity(_guessed_email(request))


class PasswordCheckThrottle(SigninAccountThrottle):
    """The signed-in caller's current password (a password change) spends the same budget as
    a sign-in to their account from that address: guessing it is guessing the password."""

    def identity(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return _from_this_address(account_identity(request.user.email), request)


class SigninIPThrottle(SharedRateThrottle):
    """Per client IP across accounts: ``QUICKPE_SIGNIN_IP_RATE`` (default 30/m)."""

    rate_setting = "QUICKPE_SIGNIN_IP_RATE"
    scope = "signin-ip"

    def identity(self, request, view):
        return client_ip(request)


class SignupIPThrottle(SigninIPThrottle):
    rate_setting = "QUICKPE_SIGNUP_IP_RATE"
    scope = "signup-ip"


class PerUserThrottle(SharedRateThrottle):
    """A budget per signed-in user (anonymous callers are refused before this by
    authentication)."""

    def identity(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


class SearchRateThrottle(PerUserThrottle):
    """``QUICKPE_SEARCH_RATE`` (default 30/m); enough to type into a payee box, too few to
    walk the directory."""

    rate_setting = "QUICKPE_SEARCH_RATE"
    scope = "search"


class ExportRateThrottle(PerUserThrottle):
    """``QUICKPE_EXPORT_RATE`` (default 10/h); each export is real work for a worker."""

    rate_setting = "QUICKPE_EXPORT_RATE"
    scope = "export"


class EmailVerificationThrottle(PerUserThrottle):
    """``QUICKPE_EMAIL_VERIFICATION_RATE`` (default 3/h): each link is an email to an address
    whose owner has not yet shown they want QuickPe's mail."""

    rate_setting = "QUICKPE_EMAIL_VERIFICATION_RATE"
    scope = "email-verification"
