"""JWT authentication with a cheaper user lookup (it runs on every API request)."""

from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings

from quickpe.db import fetch_models
from wallet.models import User

_USER_BY_ID = "SELECT * FROM wallet_user WHERE id = %s"


class QuickPeJWTAuthentication(JWTAuthentication):
    """simplejwt's authentication, loading the user with one hand-written query instead of a
    compiled ORM query (see quickpe.db.fetch_models); the checks are simplejwt's own."""

    def get_user(self, validated_token):
        try:
            user_id = int(validated_token[api_settings.USER_ID_CLAIM])
        except (KeyError, TypeError, ValueError):
            raise InvalidToken(_("Token contained no recognizable user identification")) from None
        found = fetch_models(User, _USER_BY_ID, [user_id])
        if not found:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        user = found[0]
        if not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        return user
