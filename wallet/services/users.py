"""Accounts: sign-up, sign-in, tokens, profile and password."""

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from audit.services import audit_append
from notifications.services import events_emit, security_notification
from quickpe.errors import InvalidCredentials, QuickPeError
from quickpe.jobs import dispatch_after_commit
from quickpe.unit_of_work import unit_of_work
from wallet.locks import user_lock
from wallet.models import User, Wallet
from wallet.references import new_quickpe_id
from wallet.services import sessions
from wallet.services.emails import email_check, verification_mail_on_commit


def _audit(*, events: dict | None = None, **entry):
    """Audit a change that has no events of its own beyond ``audit:new`` (plus ``events``)."""
    audited = audit_append(**entry)
    events_emit(events or {}, audit=[audited])
    return audited


class EmailTaken(QuickPeError):
    status, code = 409, "email_taken"
    default_detail = "An account with this email already exists."


class WrongPassword(QuickPeError):
    status, code = 400, "invalid_password"
    default_detail = "The current password is wrong."


class WeakPassword(QuickPeError):
    status, code = 400, "weak_password"
    default_detail = "Choose a stronger password."


def password_check(password: str, *, user: User, field: str) -> None:
    """Django's password validators, reported as field errors."""
    try:
        validate_password(password, user)
    except DjangoValidationError as error:
        raise WeakPassword(
            " ".join(error.messages),
            errors=[
                {"field": field, "code": item.code or "invalid", "detail": " ".join(item.messages)}
                for item in error.error_list
            ],
        ) from None


def normalize_email(email: str) -> str:
    return email.strip().lower()


@unit_of_work
def user_create(
    *,
    email: str,
    password: str | None,
    first_name: str = "",
    last_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    email_verified: bool = False,
    request=None,
) -> User:
    """Create a user, their wallet (balance 0) and the audit entry, in one transaction, and
    mail a link to verify the address once it commits (built from ``request``'s host: without
    a request no link goes out). ``email_verified`` creates the account verified, for data
    whose addresses are known (demo accounts, tests); sign-ups never pass it.

    Keeps: one account per address (``EmailTaken``), no address that passes for another
    (``EmailConfusable``). The QuickPe ID is random; on the rare collision the insert is
    retried with a new one inside a savepoint. The optional signup bonus is an ordinary
    audited deposit.
    """
    email = normalize_email(email)
    email_check(email)
    if User.objects.filter(email=email).exists():
        raise EmailTaken()
    user = User(
        email=email,
        first_name=first_name,
        last_name=last_name,
        is_staff=is_staff,
        is_superuser=is_superuser,
        email_verified=email_verified,
        email_verified_at=timezone.now() if email_verified else None,
    )
    if password:
        password_check(password, user=user, field="password")
        user.set_password(password)
    else:
        user.set_unusable_password()
    for _attempt in range(10):
        user.quickpe_id = new_quickpe_id()
        try:
            with transaction.atomic():
                user.save(force_insert=True)
            break
        except IntegrityError as error:
            if "quickpe_id" not in str(error):
                raise EmailTaken() from None  # lost a race with a concurrent sign-up
    else:
        raise RuntimeError("could not allocate a unique QuickPe ID")
    Wallet.objects.create(user=user)
    _audit(
        actor=user,
        action="user.signup",
        entity_type="user",
        entity_id=user.pk,
        data={
            "email": email,
            "quickpe_id": user.quickpe_id,
            "is_staff": is_staff,
            "email_verified": email_verified,
        },
        request=request,
    )
    if not email_verified:
        verification_mail_on_commit(user, request=request)
    if settings.QUICKPE_SIGNUP_BONUS:
        from wallet.tasks import signup_bonus_credit  # tasks import services

        # Credited by a worker once the account exists: signup stays fast, and the
        # bonus arrives as a live deposit (balance, line, notification) moments later.
        dispatch_after_commit(signup_bonus_credit, user.pk)
    return user


@unit_of_work
def tokens_issue(user: User, *, request=None) -> dict[str, str]:
    """A token pair on a new device session, without a sign-in (signup's first device)."""
    tokens, _session, _events = sessions.session_start(user=user, request=request, is_signin=False)
    return tokens


def user_authenticate(*, email: str, password: str, via: str = "", request=None) -> User:
    """The password check of every sign-in (API, dashboard and admin): the active user, or a
    failure audited (``user.signin_failed``, the email masked) and InvalidCredentials. Runs
    before any unit of work: hashing holds no locks. The per-account and per-IP limits are
    the callers' (``quickpe.throttling``), counted before this runs."""
    email = normalize_email(email)
    user = authenticate(request, username=email, password=password)
    if user is None:
        _signin_failure_record(email=email, via=via, request=request)
        raise InvalidCredentials()
    second_factor_check(user=user, via=via)
    return user


def second_factor_check(*, user: User, via: str) -> None:
    """Where a sign-in whose password was right will ask for a second factor: every path (API,
    dashboard, admin) passes here after the password and before a session opens. Two-factor
    is not built yet. When it is, ``QUICKPE_STAFF_REQUIRE_2FA`` makes a staff member without a
    confirmed second factor stop here (audited as ``user.signin_failed``, reason
    ``second_factor``) instead of being signed in."""


def user_signin(*, email: str, password: str, request=None) -> tuple[User, dict[str, str]]:
    """Check the password and open a device session (a first sign-in from a device sends a
    ``security`` notification); a failure is audited and raises InvalidCredentials."""
    user = user_authenticate(email=email, password=password, request=request)
    return user, _signin_record(user=user, request=request)


def staff_signin(*, email: str, password: str, request=None) -> User:
    """The admin's sign-in: the password check every sign-in makes, then staff only (a
    customer's right password is refused like a wrong one, and audited with the reason).
    Opens no device session: the admin runs on Django's session and staff permissions, and
    the caller (the admin's login view) signs the browser in. Audited ``user.signin`` with
    ``via: admin``."""
    user = user_authenticate(email=email, password=password, via="admin", request=request)
    if not user.is_staff:
        _signin_failure_record(email=user.email, via="admin", reason="not_staff", request=request)
        raise InvalidCredentials()
    _audit_as_unit(
        actor=user,
        action="user.signin",
        entity_type="user",
        entity_id=user.pk,
        data={"via": "admin"},
        request=request,
    )
    return user


def _signin_failure_record(*, email: str, via: str = "", reason: str = "", request) -> None:
    """Actor-less (chain 0): whoever typed the email is not known to be its owner."""
    data = {"email": email}
    if via:
        data["via"] = via
    if reason:
        data["reason"] = reason
    _audit_as_unit(
        actor=None, action="user.signin_failed", entity_type="user", data=data, request=request
    )


@unit_of_work
def _audit_as_unit(**entry) -> None:
    """An audited attempt that changes nothing else (a sign-in to the admin, a wrong current
    password). Locks: the actor's audit chain head, the actor's stream."""
    _audit(**entry)


@unit_of_work
def _signin_record(*, user: User, request) -> dict[str, str]:
    """Open the device session of a sign-in and audit it. Locks: the user row, the user's
    audit chain head, the user's stream."""
    tokens, session, events = sessions.session_start(user=user, request=request)
    _audit(
        events=events,
        actor=user,
        action="user.signin",
        entity_type="user",
        entity_id=user.pk,
        data={"session_id": session.pk, "device": session.device},
        request=request,
    )
    return tokens


@unit_of_work
def user_signout(*, refresh: RefreshToken, request=None) -> None:
    """Revoke one refresh token (idempotent: revoking a revoked token is not an error)."""
    user = User.objects.filter(pk=refresh.payload.get("user_id")).first()
    refresh.blacklist()
    sessions.session_end(refresh=refresh)
    _audit(
        actor=user,
        action="user.signout",
        entity_type="user",
        entity_id=user.pk if user else "",
        request=request,
    )


def user_password_change(
    *,
    user: User,
    old_password: str,
    new_password: str,
    current_session_id: int | None = None,
    request=None,
) -> None:
    """Change the password, sign every other device out and revoke every refresh token of the
    user (this device's too: it keeps its access token until that expires). A wrong current
    password is audited (``user.password_change_failed``) and changes nothing else; guesses
    are limited per account by the caller, in the sign-in budget. The passwords are checked
    before the unit of work: hashing holds no locks."""
    if not user.check_password(old_password):
        # Audited in its own unit of work: the refusal below changes nothing else.
        _audit_as_unit(
            actor=user,
            action="user.password_change_failed",
            entity_type="user",
            entity_id=user.pk,
            data={"email": user.email},
            request=request,
        )
        raise WrongPassword.on_field("old_password")
    password_check(new_password, user=user, field="new_password")
    user.set_password(new_password)
    password_save(
        user=user,
        action="user.password_change",
        notice=(
            "Your password was changed",
            "Every other device was signed out. If this was not you, contact support.",
        ),
        keep_session_id=current_session_id,
        request=request,
    )


@unit_of_work
def password_save(
    *,
    user: User,
    action: str,
    notice: tuple[str, str],
    keep_session_id: int | None = None,
    request=None,
) -> None:
    """Save the new password hash already set on ``user`` (by a change or a reset link), sign
    every device out but ``keep_session_id``'s (sessions revoked, refresh tokens blacklisted),
    audit ``action`` as the user's own and tell them (``notice``: title, body).
    Locks: the user row, the user's audit chain head, the user's stream."""
    user.save(update_fields=["password"])
    revoked = sessions.sessions_revoke_all(user=user, keep_session_id=keep_session_id)
    title, body = notice
    user_id, event = security_notification(user=user, title=title, body=body)
    _audit(
        events={user_id: [event]},
        actor=user,
        action=action,
        entity_type="user",
        entity_id=user.pk,
        data={"revoked_tokens": revoked},
        request=request,
    )


@unit_of_work
def user_update_profile(*, user: User, request=None, **changes: str) -> User:
    allowed = {k: v for k, v in changes.items() if k in ("first_name", "last_name")}
    if not allowed:
        return user
    before = {field: getattr(user, field) for field in allowed}
    for field, value in allowed.items():
        setattr(user, field, value)
    user.save(update_fields=list(allowed))
    _audit(
        actor=user,
        action="user.profile_update",
        entity_type="user",
        entity_id=user.pk,
        data={"before": before, "after": allowed},
        request=request,
    )
    return user


# What support staff may change on an account in the admin's form, and what the audit entry
# records of each (passwords are named, never recorded).
ADMIN_EDITABLE = ("email", "first_name", "last_name", "is_staff", "is_superuser")


@unit_of_work
def user_admin_change(
    *, actor: User, user: User, changes: dict, also_changed: list[str] = (), request=None
) -> User:
    """Save what support staff changed on an account in the admin (``changes``: field ->
    new value, of ``ADMIN_EDITABLE``), with the email normalised as at sign-up (else the
    customer could neither sign in nor be paid by email), and audit it; ``also_changed``
    names what the admin saves itself (groups), recorded without values. A new email is
    unverified until its owner follows the link mailed to it once this commits. Keeps: one
    account per email (``EmailTaken``), no email that passes for another
    (``EmailConfusable``). Locks: the user row, the actor's audit chain head."""
    unknown = set(changes) - set(ADMIN_EDITABLE)
    assert not unknown, f"not editable in the admin: {sorted(unknown)}"
    locked = user_lock(user=user)
    if "email" in changes:
        changes = {**changes, "email": normalize_email(changes["email"])}
        if changes["email"] != locked.email:
            email_check(changes["email"])
            if User.objects.filter(email=changes["email"]).exclude(pk=locked.pk).exists():
                raise EmailTaken.on_field("email")
            # Nobody has shown they read the new address: found by QuickPe ID only until then.
            changes = {**changes, "email_verified": False, "email_verified_at": None}
    changed = sorted(field for field, value in changes.items() if getattr(locked, field) != value)
    if not changed and not also_changed:
        return locked
    for field in changed:
        setattr(locked, field, changes[field])
    if changed:
        locked.save(update_fields=changed)
    _audit(
        actor=actor,
        action="admin.user_change",
        entity_type="user",
        entity_id=locked.pk,
        data={
            "changed": sorted([*changed, *also_changed]),
            "values": {field: changes[field] for field in changed},
        },
        request=request,
    )
    if "email" in changed:
        verification_mail_on_commit(locked, request=request)
    return locked


def user_admin_password_set(*, actor: User, user: User, password: str | None, request=None) -> User:
    """Set (or, with None, disable) an account's password from the admin and sign it out
    everywhere: sessions revoked, refresh tokens blacklisted. Audited with the password named,
    never recorded. The hash is made before the unit of work: hashing holds no locks."""
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    return _admin_password_save(actor=actor, user=user, request=request)


@unit_of_work
def _admin_password_save(*, actor: User, user: User, request) -> User:
    """Locks: the user row, the actor's audit chain head."""
    user.save(update_fields=["password"])
    sessions.sessions_revoke_all(user=user)
    _audit(
        actor=actor,
        action="admin.user_change",
        entity_type="user",
        entity_id=user.pk,
        data={"changed": ["password"], "values": {}},
        request=request,
    )
    return user
