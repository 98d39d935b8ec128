"""Security defaults of every answer and every file (issue 15, item 7): a Content-Security-Policy
with no inline script, nothing personal kept by caches, export files readable by QuickPe's user
only, demo data never seeded into a configured deployment, a Django without known CVEs."""

import re
import stat
from pathlib import Path

import django
import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from analytics.models import Export
from analytics.tasks import export_build
from tests.conftest import PASSWORD, client_for, fund
from tests.test_admin import staff_in
from wallet.models import User

pytestmark = pytest.mark.django_db
DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {
        name: values
        for name, *values in (directive.split() for directive in header.split(";") if directive)
    }


def signed_in_browser(user) -> Client:
    browser = Client()
    assert browser.post("/signin", {"email": user.email, "password": PASSWORD}).status_code == 302
    return browser


def test_every_kind_of_page_carries_a_policy_without_inline_script(alice, settings):
    settings.QUICKPE_WEBSOCKET_URL = "ws://127.0.0.1:8001/ws/events/"
    _staff, admin = staff_in("compliance")
    pages = [
        (Client(), "/"),
        (Client(), "/signin"),
        (signed_in_browser(alice), "/app/"),
        (admin, "/admin/"),
        (Client(), "/api/docs/"),
        (client_for(alice), "/api/v1/wallet"),
    ]
    for client, path in pages:
        response = client.get(path)
        assert response.status_code == 200, path
        directives = policy(response)
        assert directives["script-src"] == ["'self'"], path
        assert directives["frame-ancestors"] == ["'none'"]
        assert directives["object-src"] == ["'none'"]
        # The event stream may live on its own port: the page may connect to it.
        assert "ws://127.0.0.1:8001" in directives["connect-src"]


def test_no_page_or_api_docs_relies_on_an_inline_script(alice):
    """The policy would block an inline script, so none may be needed: no <script> without a
    src (data blocks, which are not run, aside) and no on* handler attributes."""
    _staff, admin = staff_in(None, is_superuser=True)
    for client, path in [
        (Client(), "/"),
        (Client(), "/signup"),
        (signed_in_browser(alice), "/app/"),
        (signed_in_browser(alice), "/app/requests"),
        (signed_in_browser(alice), "/app/settings"),
        (admin, "/admin/"),
        (admin, f"/admin/wallet/user/{alice.pk}/change/"),
        (Client(), "/api/docs/"),
    ]:
        html = client.get(path).content.decode()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"\son[a-z]+=", html), path


def test_personal_answers_are_never_stored_by_caches(alice, export_folder, settings):
    settings.QUICKPE_EXPORT_RATE = None
    fund(alice, 10_00)
    api = client_for(alice)
    queued = api.post("/api/v1/exports", {"kind": "statement", "format": "csv"}, format="json")
    export_build(queued.json()["id"])
    for response in [
        api.get("/api/v1/wallet"),
        api.get("/api/v1/transactions"),
        api.get("/api/v1/me"),
        api.get(f"/api/v1/exports/{queued.json()['id']}/download"),
        signed_in_browser(alice).get("/app/"),
    ]:
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]


def test_export_files_are_readable_by_quickpes_user_only(alice, export_folder, settings):
    settings.QUICKPE_EXPORT_RATE = None
    fund(alice, 10_00)
    queued = client_for(alice).post(
        "/api/v1/exports", {"kind": "statement", "format": "pdf"}, format="json"
    )
    export_build(queued.json()["id"])
    stored = export_folder / Export.objects.get(pk=queued.json()["id"]).file
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700


def test_every_systemd_unit_keeps_its_files_private():
    units = sorted(DEPLOY.glob("*.service"))
    assert units
    for unit in units:
        service = unit.read_text().split("[Service]", 1)[1].split("\n[", 1)[0]
        assert "\nUMask=0077\n" in service, unit.name


def test_demo_data_is_never_seeded_into_a_configured_deployment(settings):
    settings.IS_EMBEDDED = False
    users = User.objects.count()
    with pytest.raises(CommandError, match="embedded development database"):
        call_command("seed_demo")
    assert User.objects.count() == users


def test_django_is_a_release_without_the_cves_fixed_in_5_2_20():
    assert django.VERSION[:3] >= (5, 2, 20)
