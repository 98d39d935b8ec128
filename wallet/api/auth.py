"""Accounts API: sign-up, sign-in, token refresh and sign-out, email verification, profile,
password, user search."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from quickpe.authentication import SESSION_CLAIM
from quickpe.throttling import (
    EmailVerificationThrottle,
    PasswordCheckThrottle,
    SearchRateThrottle,
    SigninAccountThrottle,
    SigninAccountWideThrottle,
    SigninIPThrottle,
    SignupIPThrottle,
)
from wallet import selectors
from wallet.api.serializers import (
    AuthResultSerializer,
    DeviceSessionSerializer,
    EmailVerifySerializer,
    PasswordChangeSerializer,
    ProfileUpdateSerializer,
    RefreshSerializer,
    SigninSerializer,
    SignupSerializer,
    TokenPairSerializer,
    UserSearchQuerySerializer,
    UserSearchResultSerializer,
    UserSerializer,
)
from wallet.services import emails, sessions, users


def _auth_result(user, tokens) -> dict:
    return {"user": UserSerializer(user).data, **tokens}


class SignupView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [SignupIPThrottle]
    problem_responses = {"409": "`email_taken`: an account with this email exists"}

    problem_responses = {
        "400": "Invalid input (`validation_error`); a weak password (`weak_password`); an "
        "address that mixes scripts or passes for another (`email_confusable`)",
        "409": "`email_taken`: an account with this email exists",
    }

    @extend_schema(
        request=SignupSerializer,
        responses={201: AuthResultSerializer},
        tags=["auth"],
        description="Creates the account and mails a one-time link to verify the address "
        "(valid QUICKPE_EMAIL_VERIFICATION_HOURS, 24 h). Until it is followed, `email_verified` "
        "is false and nobody finds the account by email (transfers, money requests, search): "
        "only by QuickPe ID.",
    )
    def post(self, request):
        serializer = SignupSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = users.user_create(**serializer.validated_data, request=request)
        tokens = users.tokens_issue(user, request=request)
        return Response(_auth_result(user, tokens), status=status.HTTP_201_CREATED)


class SigninView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [SigninAccountThrottle, SigninAccountWideThrottle, SigninIPThrottle]
    problem_responses = {"401": "`invalid_credentials`: wrong email or password"}

    @extend_schema(
        request=SigninSerializer,
        responses={200: AuthResultSerializer},
        tags=["auth"],
        description="Wrong credentials: 401 `invalid_credentials`. Throttled per account "
        "(QUICKPE_SIGNIN_RATE) and per IP: 429 with Retry-After.",
    )
    def post(self, request):
        serializer = SigninSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, tokens = users.user_signin(**serializer.validated_data, request=request)
        return Response(_auth_result(user, tokens))


def _refresh_token(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)
    except TokenError:
        raise AuthenticationFailed("The refresh token is invalid, expired or revoked.") from None


REFRESH_REFUSED = {"401": "`invalid_token`: the refresh token is invalid, expired or revoked"}


class RefreshView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    problem_responses = REFRESH_REFUSED

    @extend_schema(
        request=RefreshSerializer,
        responses={200: TokenPairSerializer},
        tags=["auth"],
        description="Refresh tokens rotate: the one sent is revoked and a new pair returned. "
        "A used or revoked refresh token is 401 `invalid_token`; a used one also signs its "
        "device session out (reuse detection), so the newer token stops working too.",
    )
    def post(self, request):
        payload = RefreshSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        tokens = sessions.session_refresh(raw=payload.validated_data["refresh"], request=request)
        return Response(tokens)


class SignoutView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    problem_responses = REFRESH_REFUSED

    @extend_schema(request=RefreshSerializer, responses={204: None}, tags=["auth"])
    def post(self, request):
        payload = RefreshSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        users.user_signout(
            refresh=_refresh_token(payload.validated_data["refresh"]), request=request
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EmailVerifyView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []  # the token is the proof: the link may open on any device
    problem_responses = {
        "400": "`invalid_token`: the link is tampered, expired, already used, or for an "
        "address the account no longer has (nothing changed); `validation_error`: no token",
    }

    @extend_schema(
        request=EmailVerifySerializer,
        responses={200: UserSerializer},
        tags=["auth"],
        description="Verifies the address a link was mailed to, with the link's `token`: "
        "from now on the account is found by email too. Each link works once.",
    )
    def post(self, request):
        payload = EmailVerifySerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = emails.email_verify(token=payload.validated_data["token"], request=request)
        return Response(UserSerializer(user).data)


class EmailVerificationView(APIView):
    throttle_classes = [EmailVerificationThrottle]
    problem_responses = {"409": "`already_verified`: the address is verified already"}

    @extend_schema(
        request=None,
        responses={202: None},
        tags=["users"],
        description="Mails a new one-time link to verify your address (earlier links keep "
        "working until they expire or one is used). 429 `rate_limited` past "
        "QUICKPE_EMAIL_VERIFICATION_RATE (3/h).",
    )
    def post(self, request):
        emails.email_verification_send(user=request.user, request=request)
        return Response(status=status.HTTP_202_ACCEPTED)


class MeView(APIView):
    @extend_schema(responses={200: UserSerializer}, tags=["users"])
    def get(self, request):
        return Response(UserSerializer(request.user).data)

    @extend_schema(request=ProfileUpdateSerializer, responses={200: UserSerializer}, tags=["users"])
    def patch(self, request):
        serializer = ProfileUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        user = users.user_update_profile(
            user=request.user, request=request, **serializer.validated_data
        )
        return Response(UserSerializer(user).data)


class PasswordView(APIView):
    throttle_classes = [PasswordCheckThrottle]

    @extend_schema(
        request=PasswordChangeSerializer,
        responses={204: None},
        tags=["users"],
        description="Revokes every refresh token of the user. Wrong old password: 400 "
        "`invalid_password` (audited); a weak new one: 400 `weak_password`. Throttled per "
        "account, in the sign-in budget (QUICKPE_SIGNIN_RATE): 429 with Retry-After.",
    )
    def post(self, request):
        serializer = PasswordChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        users.user_password_change(
            user=request.user,
            current_session_id=request.auth.get(SESSION_CLAIM),
            request=request,
            **serializer.validated_data,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SessionListView(APIView):
    @extend_schema(
        responses={200: DeviceSessionSerializer(many=True)},
        tags=["users"],
        description="Your signed-in devices, newest first; `current` marks this one. Each "
        "sign-in is a session; at most QUICKPE_MAX_SESSIONS (10) stay active, the oldest "
        "signed out first.",
    )
    def get(self, request):
        found = request.user.device_sessions.active().order_by("-created_at", "-pk")
        context = {"current_session_id": request.auth.get(SESSION_CLAIM)}
        return Response(DeviceSessionSerializer(found, many=True, context=context).data)


class SessionDetailView(APIView):
    problem_responses = {"404": "`not_found`: not one of your active sessions"}

    @extend_schema(
        responses={204: None},
        tags=["users"],
        description="Signs that device out: its refresh token and access tokens stop working "
        "at once.",
    )
    def delete(self, request, pk: int):
        sessions.session_revoke(user=request.user, session_id=pk, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserSearchView(APIView):
    throttle_classes = [SearchRateThrottle]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "search",
                {
                    "type": "string",
                    # 3 to 100 characters once trimmed; PostgreSQL text holds no NUL.
                    "pattern": r"^\s*[^\s\x00][^\x00]{1,98}[^\s\x00]\s*$",
                },
                required=True,
                description="3 to 100 characters, not counting spaces at either end.",
            )
        ],
        responses={200: UserSearchResultSerializer(many=True)},
        tags=["users"],
        description="Matches name, QuickPe ID or exact email; at most 20, never the caller, "
        "never staff accounts. 429 `rate_limited` past QUICKPE_SEARCH_RATE.",
    )
    def get(self, request):
        # A CharField trims, and refuses NUL characters (PostgreSQL text cannot hold them).
        params = UserSearchQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        found = selectors.users_search(query=params.validated_data["search"], exclude=request.user)
        return Response(UserSearchResultSerializer(found, many=True).data)
