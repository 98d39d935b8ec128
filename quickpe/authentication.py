"""How a request shows who it is: every sign-in is a device session (``wallet.services.sessions``),
and its tokens and its browser work only while that session is active. Revoking a session (a
device signed out in Settings, a password change) stops them at once, not when they expire.

The tokens carry the session's id in a claim, a dashboard browser keeps it in its Django session;
the user model answers whether the session is active (``in_active_session``,
``has_active_session``), so the API, the dashboard and the WebSocket of every app check it the
same way without knowing where sessions are stored.
"""

from django.contrib.auth import get_user_model, login
from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

SESSION_CLAIM = "sid"  # the device session's id, in every access and refresh token
DEVICE_SESSION = "device_session"  # the browser's device session id, in its Django session


def browser_sign_in(request, user, tokens: dict) -> None:
    """Sign the browser in with the device session the sign-in service just opened."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[DEVICE_SESSION] = RefreshToken(tokens["refresh"], verify=False)[SESSION_CLAIM]


def user_for_access_token(token):
    """The active user a validated access token speaks for, while its session is active."""
    try:
        user_id = int(token[api_settings.USER_ID_CLAIM])
        session_id = int(token[SESSION_CLAIM])
    except (KeyError, TypeError, ValueError):
        return None
    user = get_user_model().objects.in_active_session(user_id=user_id, session_id=session_id)
    return user if user is not None and user.is_active else None


def staff_with(*permissions: str) -> type[BasePermission]:
    """A DRF permission for staff APIs: an active staff member holding every one of
    ``permissions``, the admin's own, so an API answers exactly whom the admin would show the
    same thing (superusers hold them all). Being staff alone grants nothing."""

    class StaffWith(BasePermission):
        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_active and user.is_staff and user.has_perms(permissions))

    StaffWith.__name__ = f"StaffWith({', '.join(permissions)})"
    return StaffWith


class QuickPeJWTAuthentication(JWTAuthentication):
    """simplejwt's token checks; the user comes from ``user_for_access_token``, in one query (it
    runs on every API request)."""

    def get_user(self, validated_token):
        user = user_for_access_token(validated_token)
        if user is None:
            raise InvalidToken(_("The token's user or session is no longer active."))
        return user
