"""Shared fixtures. Tests run on the real PostgreSQL and Redis (embedded by default)."""

import json
import re
import uuid
from datetime import timedelta
from itertools import count

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from audit.chain import GENESIS_HASH, MAX_CHAINS
from audit.models import AuditEntry
from notifications.models import Event, Notification
from quickpe.business_day import business_day, day_start
from wallet.models import IdempotencyKey, LedgerEntry, MoneyRequest, Transfer, User, Wallet
from wallet.services import support
from wallet.services.money import deposit_create
from wallet.services.users import tokens_issue, user_create

PASSWORD = "a-long-test-passphrase"
_emails = count(1)


def _noon_in_kolkata():
    return day_start(business_day()) + timedelta(hours=12)


# For tests whose steps must all fall on one Asia/Kolkata day (daily limits, "today"): the
# clock (time-machine) moves to noon IST of the day under way before the test's fixtures run,
# and ticks on from there, so a test started just before 18:30 UTC cannot end on the next day.
same_business_day = pytest.mark.time_machine(_noon_in_kolkata, tick=True)


@pytest.fixture(autouse=True)
def _isolated_settings(settings):
    # Argon2 is the production hasher (asserted in test_auth); tests use a fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # Rate-limit keys live in the shared Redis: a fresh namespace per test keeps them apart.
    settings.QUICKPE_REDIS_PREFIX = f"test-{uuid.uuid4().hex}"
    settings.QUICKPE_MONEY_RATE = None
    settings.QUICKPE_SIGNIN_RATE = None
    settings.QUICKPE_SIGNIN_IP_RATE = None
    settings.QUICKPE_SIGNIN_ACCOUNT_RATE = None
    settings.QUICKPE_SIGNUP_IP_RATE = None
    settings.QUICKPE_SEARCH_RATE = None
    settings.QUICKPE_EMAIL_VERIFICATION_RATE = None


@pytest.fixture(scope="session", autouse=True)
def _close_consumer_connections(django_db_setup, django_db_blocker):
    """WebSocket consumers query from worker threads that keep their own connections; end them
    before the test database is dropped (this fixture is torn down before django_db_setup)."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True)
def _audit_chain_heads(request):
    """Tests with transaction=True end by flushing every table, which also removes the chain
    heads that migration audit.0003 seeded (production never flushes). Put them back for any
    test that touches the database."""
    uses_db = request.node.get_closest_marker("django_db") or {"db", "transactional_db"} & set(
        request.fixturenames
    )
    if not uses_db:
        return
    request.getfixturevalue("db")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditchainhead (chain, last_seq, last_hash)"
            " SELECT chain, NULL, %s FROM generate_series(0, %s) AS chain ON CONFLICT DO NOTHING",
            [GENESIS_HASH, MAX_CHAINS - 1],
        )


@pytest.fixture
def celery_worker():
    """A real Celery worker (a thread of this process) on the real Redis broker. `make test`
    runs in its own Redis namespace, so a developer's `make run` worker never answers it."""
    from celery.contrib.testing.worker import start_worker

    from quickpe.celery import app

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield app


def make_user(
    first_name: str = "Test", last_name: str = "User", *, verified: bool = True, **fields
) -> User:
    """A user made by the sign-up service; ``verified`` (the default: many tests pay by email)
    creates it with its email verified, as if its owner had followed the link."""
    email = fields.pop("email", None) or f"user{next(_emails)}-{uuid.uuid4().hex[:6]}@example.com"
    return user_create(
        email=email,
        password=PASSWORD,
        first_name=first_name,
        last_name=last_name,
        email_verified=verified,
        **fields,
    )


def fund(user: User, paise: int) -> None:
    deposit_create(user=user, amount=paise)


def wallet_status_set(user: User, status: str, *, actor: User, reason: str = "Test") -> None:
    """Freeze or unfreeze ``user``'s wallet through the support service (audited, the customer
    told), as ``actor``, a staff member given the permission it needs."""
    actor.user_permissions.add(Permission.objects.get(codename="freeze_wallet"))
    actor = User.objects.get(pk=actor.pk)  # permissions are cached per instance
    change = support.wallet_freeze if status == Wallet.Status.FROZEN else support.wallet_unfreeze
    change(wallet=Wallet.objects.get(user=user), actor=actor, reason=reason)


@pytest.fixture
def user_factory(db):
    return make_user


@pytest.fixture
def alice(db):
    return make_user("Alice", "Sharma")


@pytest.fixture
def bob(db):
    return make_user("Bob", "Verma")


def client_for(user: User | None = None, *, token: str | None = None) -> APIClient:
    """An API client signed in as ``user`` (a new device session) or with ``token``.

    Threads racing as one user share one token issued beforehand: every sign-in opens a
    session, and past QUICKPE_MAX_SESSIONS the oldest are revoked, so a thread's own token
    could die before it is used (401)."""
    client = APIClient()
    if token is None and user is not None:
        token = tokens_issue(user)["access"]
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def api():
    return client_for()


def snapshot() -> dict:
    """Everything a refused request must leave exactly as it was."""
    return {
        "balances": dict(Wallet.objects.values_list("user_id", "balance")),
        "ledger": LedgerEntry.objects.count(),
        "transfers": Transfer.objects.count(),
        "audit": AuditEntry.objects.count(),
        "users": User.objects.count(),
        "events": Event.objects.count(),
        "notifications": Notification.objects.count(),
        "money_requests": dict(MoneyRequest.objects.values_list("pk", "status")),
    }


def idempotency_keys() -> int:
    return IdempotencyKey.objects.count()


PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "errors"}
# What must never reach a client: stack traces, SQL, internal module and class names.
LEAKS = re.compile(
    r"Traceback|File \"|psycopg|IntegrityError|DataError|OperationalError|SELECT |"
    r"INSERT |django\.|rest_framework|wallet\.|quickpe\.",
)


def assert_problem(response, status: int, code: str) -> dict:
    """A 4xx/5xx answer is problem+json with this status and stable code, and leaks nothing."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = json.loads(response.content)
    assert set(body) == PROBLEM_KEYS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:quickpe:problem:{code}"
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    assert not LEAKS.search(response.content.decode()), response.content
    return body


@pytest.fixture
def export_folder(settings, tmp_path):
    """Export files in this test's own folder (the `exports` storage)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            **settings.STORAGES["exports"],
            "OPTIONS": {
                **settings.STORAGES["exports"]["OPTIONS"],
                "location": str(tmp_path / "exports"),
            },
        },
    }
    return tmp_path / "exports"
