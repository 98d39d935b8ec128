"""JWT authentication with a cheaper user lookup (it runs on every API request), which also
checks that the token's device session is still active: revoking a session (a device signed
out in Settings, a password change) stops its access tokens at once, not when they expire."""

from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings

from quickpe.db import fetch_models
from wallet.models import User
from wallet.services.sessions import SESSION_CLAIM

_USER_IN_ACTIVE_SESSION = """
    SELECT u.* FROM wallet_user u
    WHERE u.id = %s AND EXISTS (
        SELECT 1 FROM wallet_devicesession s
        WHERE s.id = %s AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()
    )
"""


def user_for_access_token(token) -> User | None:
    """The active user a validated access token speaks for, while its session is active."""
    try:
        user_id = int(token[api_settings.USER_ID_CLAIM])
        session_id = int(token[SESSION_CLAIM])
    except (KeyError, TypeError, ValueError):
        return None
    found = fetch_models(User, _USER_IN_ACTIVE_SESSION, [user_id, session_id])
    return found[0] if found and found[0].is_active else None


class QuickPeJWTAuthentication(JWTAuthentication):
    """simplejwt's token checks; the user comes from ``user_for_access_token``."""

    def get_user(self, validated_token):
        user = user_for_access_token(validated_token)
        if user is None:
            raise InvalidToken(_("The token's user or session is no longer active."))
        return user
