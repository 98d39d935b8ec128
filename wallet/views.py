"""Dashboard pages of the wallet: sign up, sign in and out, email verification, home,
transactions, money requests and settings. Each view parses a form with the API's own
serializer, calls one service and renders; the rules live in the services
(quickpe/dashboard.py and wallet/money_forms.py adapt forms to them)."""

import contextlib
import math

from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from quickpe.authentication import DEVICE_SESSION, browser_sign_in
from quickpe.dashboard import error_words, signed_in, throttled
from quickpe.errors import QuickPeError
from quickpe.formats import mask_email
from quickpe.money import format_inr
from quickpe.throttling import (
    EmailVerificationThrottle,
    MoneyRateThrottle,
    PasswordCheckThrottle,
    SearchRateThrottle,
    SigninAccountThrottle,
    SigninAccountWideThrottle,
    SigninIPThrottle,
    SignupIPThrottle,
)
from wallet import selectors
from wallet.api.filters import TransactionFilter
from wallet.api.serializers import (
    EmailVerifySerializer,
    MoneyRequestCreateSerializer,
    MovementRequestSerializer,
    PasswordChangeSerializer,
    SigninSerializer,
    SignupSerializer,
    TransferRequestSerializer,
    UserSearchQuerySerializer,
)
from wallet.models import Wallet
from wallet.money_forms import money_post, new_key
from wallet.services import emails, money, requests, sessions, users
from wallet.services.posting import Posting

RECENT = 8
PAGE = 25


def _field_errors(serializer) -> dict[str, str]:
    return {
        ("" if field == "non_field_errors" else field): " ".join(str(m) for m in problems)
        for field, problems in serializer.errors.items()
    }


def _rate_limited(request, *throttles, scope: str = "") -> dict[str, str]:
    for throttle in throttles:
        wait = throttled(request, throttle, scope)
        if wait is not None:
            return {"": f"Too many attempts; try again in {int(wait) + 1} seconds."}
    return {}


def landing(request):
    if request.user.is_authenticated:
        return redirect("/app/")
    return render(request, "dashboard/landing.html")


def signup(request):
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = SignupSerializer(data=request.POST)
        errors = _rate_limited(request, SignupIPThrottle)
        if not errors and form.is_valid():
            try:
                user = users.user_create(**form.validated_data, request=request)
                browser_sign_in(request, user, users.tokens_issue(user, request=request))
                return redirect("/app/")
            except QuickPeError as error:
                field, message = error_words(error)
                errors = {field: message}
        elif not errors:
            errors = _field_errors(form)
    return render(request, "dashboard/signup.html", {"errors": errors, "values": request.POST})


def signin(request):
    errors: dict[str, str] = {}
    next_page = request.GET.get("next", "")
    if not next_page.startswith("/app/"):  # never redirect off-site
        next_page = "/app/"
    if request.method == "POST":
        form = SigninSerializer(data=request.POST)
        errors = _rate_limited(
            request, SigninAccountThrottle, SigninAccountWideThrottle, SigninIPThrottle
        )
        if not errors and form.is_valid():
            try:
                user, tokens = users.user_signin(**form.validated_data, request=request)
                browser_sign_in(request, user, tokens)
                return redirect(next_page)
            except QuickPeError as error:
                errors = {"": error.detail}
        elif not errors:
            errors = _field_errors(form)
    context = {"errors": errors, "values": request.POST, "next": next_page}
    return render(request, "dashboard/signin.html", context)


def signout(request):
    if request.method == "POST":
        session_id = request.session.get(DEVICE_SESSION)
        if request.user.is_authenticated and session_id:
            # Already revoked elsewhere: signing out is what the user wants anyway.
            with contextlib.suppress(QuickPeError):
                sessions.session_revoke(user=request.user, session_id=session_id, request=request)
        logout(request)
        messages.info(request, "You are signed out.")
        return redirect("/signin")
    return render(request, "dashboard/signout.html")


def email_verify_page(request):
    """Where a verification link leads, signed in or not (the token is the proof). Opening it
    changes nothing, since mail scanners open links too: its button posts the token, and that
    verifies the address."""
    if request.method != "POST":
        context = {"token": request.GET.get("token", "")}
        return render(request, "dashboard/verify_email.html", context)
    form = EmailVerifySerializer(data=request.POST)
    try:
        if not form.is_valid():
            raise emails.InvalidVerificationToken()
        user = emails.email_verify(token=form.validated_data["token"], request=request)
    except QuickPeError as error:
        context = {"error": error.detail}
        return render(request, "dashboard/verify_email.html", context, status=400)
    return render(request, "dashboard/verify_email.html", {"verified": user})


@require_POST
@signed_in
def email_verification_resend(request):
    """The unverified banner's "Resend link" (every signed-in page shows it until the address
    is verified): the API's service and rate limit, then back to the page it was pressed on."""
    back = request.POST.get("next", "")
    if not back.startswith("/app/"):  # never redirect off-site
        back = "/app/"
    wait = throttled(request, EmailVerificationThrottle)
    if wait is not None:
        messages.error(
            request,
            f"We sent you a link recently. Check your inbox and spam folder, or try again in "
            f"{math.ceil(wait / 60)} min.",
        )
        return redirect(back)
    try:
        emails.email_verification_send(user=request.user, request=request)
        messages.success(
            request, f"We sent a new link to {request.user.email}. Open it to verify your email."
        )
    except QuickPeError as error:
        messages.info(request, error.detail)
    return redirect(back)


def _home_context(request, errors=None, values=None) -> dict:
    user = request.user
    wallet = Wallet.objects.get(user=user)
    return {
        "wallet": wallet,
        "activity": selectors.transactions_for(user=user).order_by("-created_at", "-id")[:RECENT],
        "pending": selectors.money_requests_for(
            user=user, role="incoming", status="pending"
        ).order_by("-created_at")[:5],
        "errors": errors or {},
        "values": values or {},
        "deposit_key": new_key(),
        "send_key": new_key(),
    }


def _movement_message(movement: Posting, what: str) -> str:
    amount, balance = format_inr(movement.entry.amount), format_inr(movement.wallet.balance)
    return f"{what} {amount}. Balance {balance}."


@signed_in
def home(request):
    if request.method != "POST":
        return render(request, "dashboard/home.html", _home_context(request))
    form_name = request.POST.get("form")
    if form_name == "deposit":
        form, scope = MovementRequestSerializer(data=request.POST), "deposit"
    elif form_name == "send":
        form, scope = TransferRequestSerializer(data=request.POST), "transfer"
    else:
        raise Http404("No such form.")
    errors = _rate_limited(request, MoneyRateThrottle, scope=scope)
    if not errors and form.is_valid():
        data = dict(form.validated_data)

        def action() -> str:
            if form_name == "deposit":
                movement = money.deposit_create(user=request.user, request=request, **data)
                return _movement_message(movement, "Added")
            recipient = money.recipient_resolve(identifier=data.pop("recipient"))
            movement = money.transfer_create(
                sender=request.user, recipient=recipient, request=request, **data
            )
            return _movement_message(movement, f"Sent to {recipient.get_full_name()}:")

        done, errors = money_post(request, name=form_name, action=action)
        if done:
            return redirect("/app/")
    elif not errors:
        errors = _field_errors(form)
    errors = {f"{form_name}_{field or 'form'}": message for field, message in errors.items()}
    context = _home_context(request, errors, request.POST)
    return render(request, "dashboard/home.html", context, status=400)


@signed_in
def people(request):
    """Recipient suggestions for the send form: the API's user search (its rules, its rate
    limit), masked emails. Too short or invalid a query suggests no one."""
    wait = throttled(request, SearchRateThrottle)
    if wait is not None:
        return JsonResponse([], safe=False, status=429, headers={"Retry-After": str(int(wait) + 1)})
    params = UserSearchQuerySerializer(data={"search": request.GET.get("q", "")})
    found = (
        selectors.users_search(query=params.validated_data["search"], exclude=request.user)
        if params.is_valid()
        else []
    )
    return JsonResponse(
        [
            {"quickpe_id": u.quickpe_id, "name": u.get_full_name(), "email": mask_email(u.email)}
            for u in found[:8]
        ],
        safe=False,
    )


@signed_in
def transactions(request):
    """The ledger with the API's own filters (``TransactionFilter``: kind, direction, category,
    amounts, dates, search); invalid values are reported and ignored."""
    mine = selectors.transactions_for(user=request.user).order_by("-created_at", "-id")
    filters = TransactionFilter(request.GET, queryset=mine)
    found = filters.qs if filters.is_valid() else mine
    page = Paginator(found, PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "page": page,
        "filters": filters,
        "errors": {name: " ".join(problems) for name, problems in filters.errors.items()},
        "query": query.urlencode(),
    }
    return render(request, "dashboard/transactions.html", context)


def _requests_context(request, errors=None, values=None) -> dict:
    now = timezone.now()
    mine = selectors.money_requests_for(user=request.user).order_by("-created_at")[:50]
    return {
        "incoming": [r for r in mine if r.payer_id == request.user.pk],
        "outgoing": [r for r in mine if r.requester_id == request.user.pk],
        "now": now,
        "errors": errors or {},
        "values": values or {},
        "pay_key": new_key(),
    }


@signed_in
def money_requests(request):
    if request.method != "POST":
        return render(request, "dashboard/requests.html", _requests_context(request))
    form = MoneyRequestCreateSerializer(data=request.POST)
    errors = _rate_limited(request, MoneyRateThrottle, scope="money_request")
    if not errors and form.is_valid():
        data = dict(form.validated_data)
        try:
            payer = requests.payer_resolve(identifier=data.pop("payer"))
            requests.money_request_create(
                requester=request.user, payer=payer, request=request, **data
            )
            messages.success(
                request, f"Asked {payer.get_full_name()} for {format_inr(data['amount'])}."
            )
            return redirect("/app/requests")
        except QuickPeError as error:
            field, message = error_words(error)
            errors = {field: message}
    elif not errors:
        errors = _field_errors(form)
    context = _requests_context(request, errors, request.POST)
    return render(request, "dashboard/requests.html", context, status=400)


@require_POST
@signed_in
def money_request_act(request, pk: int, action: str):
    """Pay (once per form key), decline or cancel; another user's request is 404."""
    if action not in ("pay", "decline", "cancel"):
        raise Http404("No such action.")
    if not selectors.money_requests_for(user=request.user).filter(pk=pk).exists():
        raise Http404("No such request.")
    if action == "pay":
        errors = _rate_limited(request, MoneyRateThrottle, scope="money_request_pay")
        if not errors:

            def pay() -> str:
                paid, posting = requests.money_request_pay(
                    user=request.user, money_request_id=pk, request=request
                )
                return _movement_message(posting, f"Paid {paid.requester.get_full_name()}:")

            _done, errors = money_post(request, name=f"pay-{pk}", action=pay)
    else:
        service = {
            "decline": requests.money_request_decline,
            "cancel": requests.money_request_cancel,
        }
        try:
            service[action](user=request.user, money_request_id=pk, request=request)
            messages.success(
                request, f"Request {action}d." if action != "cancel" else "Request cancelled."
            )
            errors = {}
        except QuickPeError as error:
            errors = {"": error_words(error)[1]}
    for message in errors.values():
        messages.error(request, message)
    return redirect("/app/requests")


@signed_in
def settings_page(request):
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = PasswordChangeSerializer(data=request.POST)
        errors = _rate_limited(request, PasswordCheckThrottle)
        if not errors and form.is_valid():
            try:
                users.user_password_change(
                    user=request.user,
                    current_session_id=request.session.get(DEVICE_SESSION),
                    request=request,
                    **form.validated_data,
                )
                # The change signs every device out, this one's tokens too: give the browser
                # a fresh device session so it stays signed in.
                browser_sign_in(
                    request, request.user, users.tokens_issue(request.user, request=request)
                )
                update_session_auth_hash(request, request.user)
                messages.success(request, "Password changed. Every other device was signed out.")
                return redirect("/app/settings")
            except QuickPeError as error:
                field, message = error_words(error)
                errors = {field: message}
        elif not errors:
            errors = _field_errors(form)
    context = {
        "sessions": request.user.device_sessions.active().order_by("-last_used_at"),
        "current": request.session.get(DEVICE_SESSION),
        "errors": errors,
    }
    return render(request, "dashboard/settings.html", context, status=400 if errors else 200)


@require_POST
@signed_in
def session_revoke(request, pk: int):
    try:
        sessions.session_revoke(user=request.user, session_id=pk, request=request)
        messages.success(request, "That device was signed out.")
    except QuickPeError as error:
        messages.error(request, error.detail)
    return redirect("/app/settings")
