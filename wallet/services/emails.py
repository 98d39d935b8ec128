"""Email addresses: which ones an account may have, and the owner's proof that it reads its own.

Money is sent by email, so an address must not pass for another one (``email_check``), and an
account is found by its address only once its owner has followed the one-time link mailed to
it. Until then ``email_verified`` is false and the account is reachable by QuickPe ID only
(``wallet.services.money.active_user_find``, ``wallet.selectors.users_search``): money sent to
an address nobody proved goes nowhere instead of to whoever typed it at sign-up.

The link carries a token made with Django's signing (``django.core.signing``: keyed by
SECRET_KEY, salted for this use, timestamped). It names the account and a keyed fingerprint of
its address and verification state, so it stops working once used (the state changes), once
the address changes, and after ``QUICKPE_EMAIL_VERIFICATION_HOURS``. Mail leaves after commit,
as support's reset links do: no network I/O while rows are locked, and no mail for a change
that rolled back.
"""

import logging
import smtplib
import unicodedata
from datetime import timedelta
from urllib.parse import urlencode

from confusable_homoglyphs import categories, confusables
from django.conf import settings
from django.core import signing
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from audit.services import audit_append
from notifications.services import events_emit
from quickpe.errors import QuickPeError
from quickpe.unit_of_work import unit_of_work
from wallet.locks import user_lock
from wallet.models import User

logger = logging.getLogger(__name__)
_SALT = "quickpe.email-verification"


class EmailConfusable(QuickPeError):
    status, code = 400, "email_confusable"
    default_detail = (
        "This email address mixes scripts or uses characters that pass for others, so people "
        "paying it could be misled. Use the address in one script, as your provider spells it."
    )


class AlreadyVerified(QuickPeError):
    status, code = 409, "already_verified"
    default_detail = "Your email address is already verified."


class InvalidVerificationToken(QuickPeError):
    status, code = 400, "invalid_token"
    default_detail = (
        "This verification link is invalid, expired or already used. Sign in and ask for a new one."
    )


# Addresses ------------------------------------------------------------------------------------


def _looks_ascii(char: str) -> bool:
    """Whether ``char`` has a look-alike in ASCII, by Unicode's confusables (TR39)."""
    found = confusables.is_confusable(char, greedy=True)
    return bool(found) and any(glyph["c"].isascii() for glyph in found[0]["homoglyphs"])


def imitates_another(text: str) -> bool:
    """Whether ``text`` (a domain, or the part before the @) could pass for a different one.

    Plain ASCII never does. Otherwise it does when a compatibility form stands in it for other
    characters (fullwidth letters, ligatures: NFKC changes it), when it mixes scripts (digits and
    punctuation aside: ``pаypal.com`` with a Cyrillic ``а``), when a non-ASCII character of Latin
    text or a punctuation mark looks like an ASCII one (``pɑypal.com``), or when every letter of
    text in another script does (``сосо.ру`` reads as ``coco.py``): TR39's mixed-script and
    whole-script confusables. Text in another script that ASCII cannot imitate letter for letter
    (``उदाहरण.भारत``, ``пример.рф``) is fine: its only look-alikes mix scripts, refused here."""
    if text.isascii():
        return False
    if unicodedata.normalize("NFKC", text) != text or confusables.is_mixed_script(text):
        return True
    others = {char for char in text if not char.isascii()}
    punctuation = {char for char in others if categories.alias(char) == "COMMON"}
    if any(_looks_ascii(char) for char in punctuation):
        return True
    letters = others - punctuation
    if categories.unique_aliases(text) <= {"LATIN", "COMMON"}:
        return any(_looks_ascii(char) for char in letters)
    return all(_looks_ascii(char) for char in letters)


def email_check(email: str) -> None:
    """Refuse an address that could pass for another (``EmailConfusable``, on ``email``):
    wherever an account's address is set, at sign-up and when support changes it."""
    local_part, _at, domain = email.rpartition("@")
    if imitates_another(domain) or imitates_another(local_part):
        raise EmailConfusable.on_field("email")


# Tokens ---------------------------------------------------------------------------------------


def _fingerprint(user: User) -> str:
    """What a token was made for: this address, not yet verified. Keyed, so the token (readable
    base64) does not reveal the address."""
    state = f"{user.pk}:{user.email}:{user.email_verified}"
    return salted_hmac(_SALT, state, algorithm="sha256").hexdigest()[:32]


def verification_token(user: User) -> str:
    return signing.dumps({"user": user.pk, "state": _fingerprint(user)}, salt=_SALT)


def _token_claims(token: str) -> tuple[int, str] | None:
    """(account id, fingerprint) of a genuine, unexpired token, else None. The fingerprint is
    compared with the locked row's by ``email_verify``."""
    max_age = timedelta(hours=settings.QUICKPE_EMAIL_VERIFICATION_HOURS)
    try:
        claims = signing.loads(token, salt=_SALT, max_age=max_age)
    except signing.BadSignature:  # tampered or expired (SignatureExpired is a BadSignature)
        return None
    if not isinstance(claims, dict):
        return None
    user_id, state = claims.get("user"), claims.get("state")
    if not isinstance(user_id, int) or not isinstance(state, str):
        return None
    return user_id, state


# Mail -----------------------------------------------------------------------------------------


def verification_mail_on_commit(user: User, *, request) -> bool:
    """Mail ``user`` a link to verify their address once the caller's transaction commits; the
    link is built from the host of ``request``, so without a request (a shell, createsuperuser)
    none is sent, and the owner asks for one from the dashboard. Returns whether one will be."""
    if request is None:
        return False
    query = urlencode({"token": verification_token(user)})
    context = {
        "user": user,
        "link": request.build_absolute_uri(f"{reverse('email-verify-page')}?{query}"),
        "hours": settings.QUICKPE_EMAIL_VERIFICATION_HOURS,
    }
    subject = render_to_string("registration/email_verification_subject.txt", context).strip()
    body = render_to_string("registration/email_verification_email.txt", context)
    recipient = user.email

    def send() -> None:
        try:
            send_mail(subject, body, None, [recipient])
        except (smtplib.SMTPException, OSError) as error:
            # The change it belongs to is committed; the owner can ask for another link.
            logger.warning("verification email not sent: %s", type(error).__name__)

    transaction.on_commit(send)
    return True


# Changes --------------------------------------------------------------------------------------


def _owner_change_record(user: User, action: str, *, request) -> None:
    """The audit entry of a change the owner made to their own address (email masked by the
    audit log), and its audit event."""
    audited = audit_append(
        actor=user,
        action=action,
        entity_type="user",
        entity_id=user.pk,
        data={"email": user.email},
        request=request,
    )
    events_emit({}, audit=[audited])


@unit_of_work
def email_verification_send(*, user: User, request) -> None:
    """Mail a new verification link to the user's address (asked for by its owner: the API, the
    dashboard's "Resend link"; the callers limit how often). Earlier links keep working until
    they expire or one is used. Keeps: only while unverified (``AlreadyVerified``). Audited
    ``user.email_verification_sent``. Locks: the user's audit chain head, the user's stream."""
    if user.email_verified:
        raise AlreadyVerified()
    _owner_change_record(user, "user.email_verification_sent", request=request)
    verification_mail_on_commit(user, request=request)


@unit_of_work
def email_verify(*, token: str, request=None) -> User:
    """Mark the address a verification link was mailed to as verified: from now on the account
    is found by it. The token is the proof (no sign-in needed); a tampered, expired or used
    one, or one for an address the account no longer has, is ``InvalidVerificationToken`` and
    changes nothing. Audited ``user.email_verified`` as the owner's own change. Locks: the user
    row, the user's audit chain head, the user's stream."""
    claims = _token_claims(token)
    found = User.objects.filter(pk=claims[0], is_active=True).first() if claims else None
    if found is None:
        raise InvalidVerificationToken()
    locked = user_lock(user=found)
    if locked.email_verified or not constant_time_compare(claims[1], _fingerprint(locked)):
        raise InvalidVerificationToken()
    locked.email_verified, locked.email_verified_at = True, timezone.now()
    locked.save(update_fields=["email_verified", "email_verified_at"])
    _owner_change_record(locked, "user.email_verified", request=request)
    return locked
