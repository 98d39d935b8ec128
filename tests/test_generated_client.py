"""A client generated from `/api/schema/` by openapi-python-client calls every operation of the
live API, the refusals included, without an exception.

The generated client raises on any status the schema does not declare for the operation
(`raise_on_unexpected_status`), parses every body into the schema's models (a missing or
mistyped field raises), and the test checks it called every operation the client has.
"""

import datetime
import importlib
import pkgutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from quickpe.business_day import business_day
from tests.conftest import make_user
from tests.processes import BASE_DIR, running_stack, wait_until
from wallet.models import User
from wallet.services.emails import verification_token
from wallet.services.users import tokens_issue

GENERATOR = Path(BASE_DIR, ".venv", "bin", "openapi-python-client")
PACKAGE = "quickpe_generated_client"

pytestmark = pytest.mark.django_db(transaction=True)


def _generate(base_url: str, directory: Path, monkeypatch):
    config = directory / "generator.yaml"
    config.write_text("post_hooks: []\n")  # it would run ruff over the code it wrote
    # Fetched here rather than by the generator, whose 5 s timeout a busy machine can exceed.
    schema = directory / "schema.json"
    with urllib.request.urlopen(f"{base_url}/api/schema/?format=json", timeout=60) as answer:  # noqa: S310
        schema.write_bytes(answer.read())
    result = subprocess.run(  # noqa: S603 - our own venv's binary
        [str(GENERATOR), "generate", "--path", str(schema), "--meta", "none"]
        + ["--output-path", str(directory / PACKAGE), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # A schema part the generator cannot turn into code is a warning, not a failure: refuse it.
    assert result.returncode == 0 and "Warning" not in result.stdout, result.stdout + result.stderr
    monkeypatch.syspath_prepend(directory)
    importlib.import_module(f"{PACKAGE}.api")
    return importlib.import_module(PACKAGE)


class Api:
    """Calls operations by their operationId and remembers which were called."""

    def __init__(self, package):
        self.package = package
        self.modules = {
            name.rsplit(".", 1)[-1]: name
            for _finder, name, is_package in pkgutil.walk_packages(
                package.api.__path__, f"{package.__name__}.api."
            )
            if not is_package
        }
        self.called: set[str] = set()

    def client(self, base_url: str, token: str | None = None):
        if token is None:
            return self.package.Client(base_url=base_url, raise_on_unexpected_status=True)
        return self.package.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True
        )

    def __call__(self, operation: str, client, status: int, **arguments):
        module = importlib.import_module(self.modules[operation])
        response = module.sync_detailed(client=client, **arguments)
        assert response.status_code == status, (operation, response.status_code, response.content)
        self.called.add(operation)
        return response.parsed


def test_a_generated_client_calls_every_operation(tmp_path, monkeypatch):
    with running_stack(
        tmp_path,
        web_only=True,
        QUICKPE_MONEY_RATE="off",
        QUICKPE_SIGNIN_RATE="off",
        QUICKPE_SIGNUP_BONUS="0",
    ) as stack:
        base = f"http://127.0.0.1:{stack.http_port}"
        generated = _generate(base, tmp_path, monkeypatch)
        models = importlib.import_module(f"{PACKAGE}.models")
        api = Api(generated)
        anonymous = api.client(base)
        _run_everything(api, models, anonymous, base, stack)
    assert api.called == set(api.modules), sorted(set(api.modules) - api.called)


def _run_everything(api, models, anonymous, base, stack):  # noqa: PLR0915 - one story, in order
    key = lambda: uuid.uuid4().hex  # noqa: E731
    password = f"pw-{uuid.uuid4().hex}"
    email = f"gen-{uuid.uuid4().hex[:8]}@example.com"

    # Accounts: sign up, a duplicate, sign in right and wrong, refresh, sign out.
    signup = models.SignupRequest(email=email, password=password, first_name="Gen", last_name="C")
    created = api("v1_auth_signup_create", anonymous, 201, body=signup)
    assert created.user.email == email
    problem = api("v1_auth_signup_create", anonymous, 409, body=signup)
    assert problem.code == "email_taken"
    api(
        "v1_auth_signin_create",
        anonymous,
        401,
        body=models.SigninRequest(email=email, password="wrong-password"),
    )
    signed_in = api(
        "v1_auth_signin_create",
        anonymous,
        200,
        body=models.SigninRequest(email=email, password=password),
    )
    pair = api(
        "v1_auth_refresh_create",
        anonymous,
        200,
        body=models.RefreshRequest(refresh=signed_in.refresh),
    )
    api(
        "v1_auth_refresh_create",
        anonymous,
        401,
        body=models.RefreshRequest(refresh=signed_in.refresh),  # reused: the session ends
    )
    api(
        "v1_auth_signout_create",
        anonymous,
        401,
        body=models.RefreshRequest(refresh=pair.refresh),  # ended with its session
    )
    api(
        "v1_auth_signin_create",
        anonymous,
        200,
        body=models.SigninRequest(email=email, password=password),
    )
    me = api.client(base, created.access)

    # Email verification: a new link, a bad token, the real one (as the mailed link carries).
    assert not created.user.email_verified
    api("v1_me_email_verification_create", me, 202)
    bad = models.EmailVerifyRequest(token="not-a-token")
    assert api("v1_auth_verify_email_create", anonymous, 400, body=bad).code == "invalid_token"
    token = verification_token(User.objects.get(email=email))
    good = models.EmailVerifyRequest(token=token)
    assert api("v1_auth_verify_email_create", anonymous, 200, body=good).email_verified
    assert api("v1_me_email_verification_create", me, 409).code == "already_verified"

    # Profile, devices, search.
    assert api("v1_me_retrieve", me, 200).quickpe_id == created.user.quickpe_id
    patched = models.PatchedProfileUpdateRequest(first_name="Generated")
    assert api("v1_me_partial_update", me, 200, body=patched).first_name == "Generated"
    sessions = api("v1_me_sessions_list", me, 200)
    other = next(session for session in sessions if not session.current)
    api("v1_me_sessions_destroy", me, 204, id=other.id)
    api("v1_me_sessions_destroy", me, 404, id=other.id)
    payee = make_user("Payee", "Person")
    found = api("v1_users_list", me, 200, search=payee.quickpe_id)
    assert [person.quickpe_id for person in found] == [payee.quickpe_id]
    assert api("v1_users_list", me, 400, search="ab").code == "validation_error"

    # Money: deposit, withdraw, pay, the refusals, one key reused for another body.
    deposit = models.MovementRequestRequest(amount="900.00", description="Salary")
    deposited = api("v1_wallet_deposits_create", me, 201, body=deposit, idempotency_key=key())
    assert deposited.balance == "900.00"
    withdrawal = models.MovementRequestRequest(amount="100.00")
    api("v1_wallet_withdrawals_create", me, 201, body=withdrawal, idempotency_key=key())
    wallet = api("v1_wallet_retrieve", me, 200)
    assert wallet.balance == "800.00" and wallet.limits.max_per_transaction
    transfer = models.TransferRequestRequest(recipient=payee.quickpe_id, amount="50.00")
    used = key()
    paid = api("v1_transfers_create", me, 201, body=transfer, idempotency_key=used)
    other_body = models.TransferRequestRequest(recipient=payee.quickpe_id, amount="51.00")
    api("v1_transfers_create", me, 422, body=other_body, idempotency_key=used)
    unknown = models.TransferRequestRequest(recipient="QP00000000", amount="1.00")
    assert api("v1_transfers_create", me, 404, body=unknown, idempotency_key=key()).code == (
        "recipient_not_found"
    )
    too_much = models.TransferRequestRequest(recipient=payee.quickpe_id, amount="99999.00")
    api("v1_transfers_create", me, 409, body=too_much, idempotency_key=key())
    assert api("v1_transfers_retrieve", me, 200, id=paid.transfer.id).amount == "50.00"
    api("v1_transfers_retrieve", me, 404, id=paid.transfer.id + 10_000)

    # The ledger, with every kind of filter and the refusals.
    lines = api(
        "v1_transactions_list",
        me,
        200,
        ordering=models.V1TransactionsListOrdering("-amount"),
        min_amount="1.00",
        created_after=datetime.date(2020, 1, 1),
        created_before=datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC),
        page_size=2,
    )
    assert [line.amount for line in lines.results] == ["900.00", "100.00"] and lines.next_
    api("v1_transactions_list", me, 400, cursor="not-a-cursor")
    api("v1_transactions_retrieve", me, 200, id=lines.results[0].id)
    api("v1_transactions_retrieve", me, 404, id=lines.results[0].id + 10_000)

    # Money requests: asked and paid, declined, cancelled.
    payee_client = api.client(base, tokens_issue(payee)["access"])
    ask = models.MoneyRequestCreateRequest(payer=created.user.quickpe_id, amount="20.00")
    asked = api("v1_money_requests_create", payee_client, 201, body=ask)
    api("v1_money_requests_retrieve", me, 200, id=asked.id)
    api("v1_money_requests_pay_create", me, 201, id=asked.id, idempotency_key=key())
    declined = api("v1_money_requests_create", payee_client, 201, body=ask)
    api("v1_money_requests_decline_create", me, 200, id=declined.id)
    api("v1_money_requests_decline_create", me, 409, id=declined.id)
    cancelled = api("v1_money_requests_create", payee_client, 201, body=ask)
    api("v1_money_requests_cancel_create", payee_client, 200, id=cancelled.id)
    incoming = api(
        "v1_money_requests_list", me, 200, role=models.V1MoneyRequestsListRole("incoming")
    )
    assert len(incoming.results) == 3

    # Notifications and the live stream's address.
    notes = api("v1_notifications_list", me, 200, unread=True)
    api("v1_notifications_read_create", me, 200, id=notes.results[0].id)
    assert api("v1_notifications_unread_count_retrieve", me, 200).count >= 0
    api("v1_notifications_read_all_create", me, 200)
    api("v1_notifications_destroy", me, 204, id=notes.results[0].id)
    api("v1_notifications_destroy", me, 404, id=notes.results[0].id)
    assert api("v1_realtime_retrieve", me, 200).url.startswith("ws")

    # Figures.
    today = business_day()  # the server's "today" is the Asia/Kolkata day
    period = {"from_": today - datetime.timedelta(days=7), "to": today + datetime.timedelta(days=1)}
    assert api("v1_analytics_summary_retrieve", me, 200, **period).deposited == "900.00"
    api("v1_analytics_summary_retrieve", me, 400, from_=period["to"], to=period["from_"])
    api("v1_analytics_timeseries_retrieve", me, 200, **period)
    api("v1_analytics_categories_list", me, 200, **period)
    api("v1_analytics_insights_list", me, 200)
    api("v1_analytics_kpi_retrieve", me, 403)
    api("v1_audit_list", me, 200, page_size=5)
    api("v1_audit_verify_retrieve", me, 403)
    staff = make_user("Comp", "Liance", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "verify_chain",
                "view_user",
                "view_wallet",
                "view_ledgerentry",
                "view_export",
            ]
        )
    )
    compliance = api.client(base, tokens_issue(staff)["access"])
    assert api("v1_audit_verify_retrieve", compliance, 200).valid
    assert api("v1_analytics_kpi_retrieve", compliance, 200).users_total >= 3

    # An export: queued, refused until built, then downloaded as bytes.
    export_request = models.ExportRequestRequest(
        kind=models.ExportKindEnum("statement"), format_=models.FormatEnum("csv")
    )
    export = api("v1_exports_create", me, 202, body=export_request)
    api("v1_exports_list", me, 200)
    api("v1_exports_download_retrieve", me, 409, id=export.id)
    # Only now a worker that builds it: started earlier, it could finish before the 409.
    stack.start_worker("worker")
    wait_until(
        lambda: api("v1_exports_retrieve", me, 200, id=export.id).status.value == "done",
        timeout=60,
        what="the export",
    )
    downloaded = api("v1_exports_download_retrieve", me, 200, id=export.id)
    assert b"Salary" in downloaded.payload.read()
    api("v1_exports_retrieve", me, 404, id=export.id + 10_000)

    # Last, as it signs every device out: the password, wrong then right; then sign-out.
    wrong = models.PasswordChangeRequest(old_password="nope", new_password=f"new-{password}")
    assert api("v1_me_password_create", me, 400, body=wrong).code == "invalid_password"
    right = models.PasswordChangeRequest(old_password=password, new_password=f"new-{password}")
    api("v1_me_password_create", me, 204, body=right)
    again = api(
        "v1_auth_signin_create",
        anonymous,
        200,
        body=models.SigninRequest(email=email, password=f"new-{password}"),
    )
    api("v1_auth_signout_create", anonymous, 204, body=models.RefreshRequest(refresh=again.refresh))
