"""Device sessions: every sign-in is one, holding the id of its current refresh token.

A refresh token works only while its session is active and it is the session's *current*
token: the check and the rotation happen under the session's row lock, so a token can be used
once, even by two requests at the same instant. Revoking a session also stops the access tokens
that carry its id (``sid``), because API and WebSocket authentication look the session up.
"""

import hashlib

from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch
from ua_parser import parse as parse_user_agent

from audit.services import audit_append
from notifications.services import events_emit, security_notification
from quickpe.authentication import SESSION_CLAIM
from quickpe.errors import NotFound, QuickPeError
from quickpe.realtime import sessions_revoked_after_commit
from quickpe.request_meta import client_ip, user_agent
from quickpe.text import fit
from quickpe.unit_of_work import require_unit, unit_of_work
from wallet.locks import session_lock, user_lock
from wallet.models import DeviceSession, User


class TokenRevoked(QuickPeError):
    status, code = 401, "invalid_token"
    default_detail = "The refresh token is invalid, expired or revoked."


def describe_device(agent: str) -> tuple[str, str]:
    """A readable device name ("Chrome on Windows") and the key new-device checks compare."""
    parsed = parse_user_agent(agent) if agent else None
    browser = parsed.user_agent.family if parsed and parsed.user_agent else ""
    system = parsed.os.family if parsed and parsed.os else ""
    hardware = parsed.device.family if parsed and parsed.device else ""
    if hardware in ("Other", "Spider"):
        hardware = ""
    if not browser and not system:
        name = "Unknown device"
    elif browser and system:
        name = f"{browser} on {system}"
    else:
        name = browser or system
    if hardware and hardware not in name:
        name = f"{name} ({hardware})"
    key = hashlib.sha256(f"{browser}\0{system}\0{hardware}".lower().encode()).hexdigest()
    return fit(DeviceSession, "device", name), key


def _new_refresh(user_id: int, session_id: int | None = None) -> RefreshToken:
    refresh = RefreshToken()
    refresh[settings.SIMPLE_JWT["USER_ID_CLAIM"]] = str(user_id)
    if session_id is not None:
        refresh[SESSION_CLAIM] = session_id
    return refresh


def _outstand(refresh: RefreshToken, user_id: int) -> None:
    """Record the token as simplejwt's blacklist app does, so staff see every token issued."""
    OutstandingToken.objects.create(
        user_id=user_id,
        jti=refresh["jti"],
        token=str(refresh),
        created_at=refresh.current_time,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )


def _blacklist(jtis: list[str]) -> None:
    tokens = OutstandingToken.objects.filter(jti__in=jtis)
    BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in tokens], ignore_conflicts=True
    )


def _pair(refresh: RefreshToken) -> dict[str, str]:
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _revoke(sessions: list[DeviceSession], now) -> None:
    DeviceSession.objects.filter(pk__in=[s.pk for s in sessions]).update(revoked_at=now)
    _blacklist([session.refresh_jti for session in sessions])
    for user_id in {session.user_id for session in sessions}:
        revoked = [session.pk for session in sessions if session.user_id == user_id]
        sessions_revoked_after_commit(user_id, revoked)


def session_start(*, user: User, request=None, is_signin: bool = True):
    """Open a device session and issue its token pair, in the caller's transaction.

    Returns ``(tokens, session, events)``: ``events`` holds the ``security`` notification of
    a sign-in from a device this user never signed in from (none at signup, the first device),
    for the caller to emit with its audit entry. Keeps: at most QUICKPE_MAX_SESSIONS active
    sessions, the oldest revoked first. Locks: the user's row.
    """
    require_unit("opening a session")
    user_lock(user=user)
    now = timezone.now()
    agent = user_agent(request) if request is not None else ""
    device, device_key = describe_device(agent)
    is_new_device = (
        is_signin and not DeviceSession.objects.filter(user=user, device_key=device_key).exists()
    )
    refresh = _new_refresh(user.pk)
    session = DeviceSession.objects.create(
        user=user,
        device=device,
        device_key=device_key,
        user_agent=agent,
        ip=client_ip(request) if request is not None else None,
        refresh_jti=refresh["jti"],
        created_at=now,
        last_used_at=now,
        expires_at=datetime_from_epoch(refresh["exp"]),
    )
    refresh[SESSION_CLAIM] = session.pk
    _outstand(refresh, user.pk)
    beyond_cap = list(
        user.device_sessions.active(now).order_by("-created_at", "-pk")[
            settings.QUICKPE_MAX_SESSIONS :
        ]
    )
    if beyond_cap:
        _revoke(beyond_cap, now)
    events = {}
    if is_new_device:
        user_id, notice = security_notification(
            user=user,
            title=f"New sign-in on {device}",
            body=f"From {session.ip or 'an unknown address'}. If this was not you, change your "
            "password and sign the device out in Settings.",
            data={"session_id": session.pk, "device": device, "ip": session.ip},
        )
        events = {user_id: [notice]}
    return _pair(refresh), session, events


class _PresentedRefresh(RefreshToken):
    """A refresh token checked for signature, expiry and type but not against simplejwt's
    blacklist, which holds every spent token: the session row tells a spent token of a live
    session (a reuse) from its current one."""

    def verify(self, *args, **kwargs) -> None:
        Token.verify(self, *args, **kwargs)

    def is_blacklisted(self) -> bool:
        return BlacklistedToken.objects.filter(token__jti=self["jti"]).exists()


def session_refresh(*, raw: str, request=None) -> dict[str, str]:
    """Rotate a refresh token: the one sent stops working and a new pair is returned.

    Keeps: only the session's current token rotates (a revoked or foreign one is
    ``TokenRevoked``), once. Reuse detection: a spent token of an active session presented
    again means it has two holders (one of them has stolen it), so the session is revoked and
    its newer token dies too, whoever holds it (``session.refresh_reused``, audited, and the
    owner told). That revocation commits in its own unit of work; then the request is
    refused like any other ``TokenRevoked``."""
    try:
        refresh = _PresentedRefresh(raw)  # signature, expiry and type
        user_id = int(refresh[settings.SIMPLE_JWT["USER_ID_CLAIM"]])
        session_id = int(refresh[SESSION_CLAIM])
    except (TokenError, KeyError, TypeError, ValueError):
        raise TokenRevoked() from None
    tokens = _session_rotate(
        refresh=refresh, user_id=user_id, session_id=session_id, request=request
    )
    if tokens is None:
        raise TokenRevoked()
    return tokens


@unit_of_work
def _session_rotate(
    *, refresh: _PresentedRefresh, user_id: int, session_id: int, request
) -> dict[str, str] | None:
    """The new pair, or None when a spent token came back and the session was revoked (the
    caller refuses the request after this commits). Locks: the session row; on a reuse, then
    the user's audit chain head and stream."""
    now = timezone.now()
    session = session_lock(
        session_id=session_id,
        user_id=user_id,
        user__is_active=True,
        revoked_at__isnull=True,
        expires_at__gt=now,
    )
    if session is None:
        raise TokenRevoked()
    if session.refresh_jti != refresh["jti"]:
        _reuse_revoke(session=session, now=now, request=request)
        return None
    if refresh.is_blacklisted():  # the session a password change kept: no refresh left
        raise TokenRevoked()
    _blacklist([session.refresh_jti])
    rotated = _new_refresh(user_id, session.pk)
    _outstand(rotated, user_id)
    session.refresh_jti = rotated["jti"]
    session.last_used_at = now
    session.expires_at = datetime_from_epoch(rotated["exp"])
    if request is not None:
        session.ip = client_ip(request)
    session.save(update_fields=["refresh_jti", "last_used_at", "expires_at", "ip"])
    return _pair(rotated)


def _reuse_revoke(*, session: DeviceSession, now, request) -> None:
    """Revoke a session whose spent refresh token came back, audit it as its owner's (the
    attempt came with the owner's token) and tell the owner."""
    _revoke([session], now)
    user_id, notice = security_notification(
        user=session.user,
        title=f"{session.device} was signed out",
        body="Its sign-in was used from two places, so it may have been copied. Sign in again "
        "on that device; if this keeps happening, change your password.",
        data={"session_id": session.pk, "device": session.device},
    )
    entry = audit_append(
        actor=session.user,
        action="session.refresh_reused",
        entity_type="session",
        entity_id=session.pk,
        data={"device": session.device},
        request=request,
    )
    events_emit({user_id: [notice]}, audit=[entry])


def session_end(*, refresh: RefreshToken) -> None:
    """Sign-out: revoke the session whose current refresh token this is (caller's transaction)."""
    session = DeviceSession.objects.filter(
        pk=refresh.get(SESSION_CLAIM), refresh_jti=refresh["jti"], revoked_at__isnull=True
    ).first()
    if session is not None:
        _revoke([session], timezone.now())


@unit_of_work
def session_revoke(*, user: User, session_id: int, request=None) -> DeviceSession:
    """Revoke one of the user's active sessions: its refresh token and access tokens stop
    working at once. Another user's session, or an ended one, is NotFound. Locks: the user's
    row, then the audit chain head."""
    user_lock(user=user)
    session = user.device_sessions.active().filter(pk=session_id).first()
    if session is None:
        raise NotFound("No such session.")
    _revoke([session], timezone.now())
    entry = audit_append(
        actor=user,
        action="session.revoke",
        entity_type="session",
        entity_id=session.pk,
        data={"device": session.device},
        request=request,
    )
    events_emit({}, audit=[entry])
    return session


def sessions_revoke_all(*, user: User, keep_session_id: int | None = None) -> int:
    """Revoke every session of the user (but ``keep_session_id``, whose access token keeps
    working until it expires) and blacklist every refresh token, the kept session's included:
    the contract says a password change revokes them all. Returns how many tokens were live."""
    now = timezone.now()
    user_lock(user=user)
    ending = DeviceSession.objects.filter(user=user, revoked_at__isnull=True).exclude(
        pk=keep_session_id
    )
    sessions_revoked_after_commit(user.pk, list(ending.values_list("pk", flat=True)))
    ending.update(revoked_at=now)
    if keep_session_id is not None:
        # Its refresh token is gone, so the session ends when its access token does.
        DeviceSession.objects.filter(pk=keep_session_id, revoked_at__isnull=True).update(
            expires_at=now + settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
        )
    live = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    revoked = BlacklistedToken.objects.bulk_create(
        [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
    )
    return len(revoked)
