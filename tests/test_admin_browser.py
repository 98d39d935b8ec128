"""The support admin in Chromium (issue 17, item 10), against gunicorn on the test database,
at a laptop's and a phone's width: a wallet's page in rupees and IST, and the confirmation
pages of a freeze and a reversal, which name the money and the people before anything moves.
Screenshots go to the test's temporary folder (``--basetemp`` keeps them where you like)."""

import pytest

from tests.conftest import PASSWORD, fund, make_user
from tests.processes import running_stack
from tests.test_browser import CHROMIUM, WAIT, chromium  # noqa: F401 - the browser fixture
from wallet.models import Transfer, Wallet
from wallet.services.money import transfer_create

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make test-tools)"),
]
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}


@pytest.fixture
def accounts(settings):
    # The servers verify passwords with the production hashers, not the suite's fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    asha, ravi = make_user("Asha", "Rao"), make_user("Ravi", "Menon")
    fund(asha, 62_634_67)
    transfer = transfer_create(sender=asha, recipient=ravi, amount=12_345_67).transfer
    staff = make_user("Sam", "Support", is_staff=True, is_superuser=True)
    return asha, ravi, transfer, staff


def signed_in_admin(chromium, stack, staff, viewport):  # noqa: F811 - the fixture's value
    context = chromium.new_context(
        base_url=f"http://127.0.0.1:{stack.http_port}",
        viewport={"width": viewport[0], "height": viewport[1]},
    )
    context.set_default_timeout(WAIT)
    page = context.new_page()
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    return page


def choose_action(page, changelist: str, search: str, action: str):
    """Find the row, tick it, pick the action and press Go: the confirmation page."""
    page.goto(f"{changelist}?q={search}")
    page.locator("input.action-select").first.check()
    page.locator("select[name=action]").select_option(action)
    page.get_by_role("button", name="Go").click()
    playwright.expect(page.get_by_label("Reason")).to_be_visible()


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_wallet_page_and_the_confirmation_pages_name_money_and_people(
    chromium,  # noqa: F811 - the fixture
    accounts,
    tmp_path,
    width,
):
    expect = playwright.expect
    asha, ravi, transfer, staff = accounts
    wallet = Wallet.objects.get(user=asha)
    with running_stack(tmp_path, web_only=True) as stack:
        page = signed_in_admin(chromium, stack, staff, WIDTHS[width])
        expect(page.get_by_test_id("time-zone-note")).to_have_text("Times in IST (Asia/Kolkata)")

        page.goto(f"/admin/wallet/wallet/{wallet.pk}/change/")
        expect(page.locator(".field-balance_inr .readonly")).to_have_text("₹50,289.00")
        expect(page.locator(".field-owner .readonly")).to_have_text(str(asha))
        page.screenshot(path=str(tmp_path / f"admin-wallet-{width}.png"), full_page=True)

        choose_action(page, "/admin/wallet/wallet/", "asha rao", "freeze")
        row = page.locator(".support-action-objects tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text(f"Asha Rao ({asha.quickpe_id})")
        expect(row).to_contain_text("₹50,289.00")
        page.screenshot(path=str(tmp_path / f"admin-freeze-{width}.png"), full_page=True)
        page.get_by_label("Reason").fill("Reported stolen phone")
        page.get_by_role("button", name="Freeze wallets").click()
        expect(page.locator(".messagelist")).to_contain_text("1 wallet(s) frozen.")
        wallet.refresh_from_db()
        assert wallet.status == "frozen"

        choose_action(page, "/admin/wallet/transfer/", transfer.reference, "reverse")
        row = page.locator(".support-action-objects tbody tr")
        expect(row).to_contain_text("₹12,345.67")
        expect(row).to_contain_text(f"Ravi Menon ({ravi.quickpe_id})")
        expect(row).to_contain_text(f"Asha Rao ({asha.quickpe_id})")
        page.screenshot(path=str(tmp_path / f"admin-reverse-{width}.png"), full_page=True)
        # Going back changes nothing.
        page.get_by_role("link", name="No, take me back").click()
        page.wait_for_url("**/admin/wallet/transfer/**")
        assert Transfer.objects.get(pk=transfer.pk).status == "completed"
        page.context.close()
