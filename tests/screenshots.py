"""``make screenshots``: the dashboard's main pages, as a person sees them, at a laptop's and a
phone's width, into ``screenshots/`` (git-ignored), for a human to look at; and the support
admin's wallet page and a confirmation page, as the demo staff member.

Runs under ``quickpe.embedded run`` on the development database with the demo data (the same
``migrate`` + ``seed_demo`` as ``make run``), starts gunicorn and daphne on free ports, signs
in as the demo user Asha in Debian's Chromium and saves full-page PNGs.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import django
from playwright.sync_api import sync_playwright

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
django.setup()  # for the demo password and the test helpers' imports

from quickpe.daphne_tuning import DAPHNE_OPTIONS  # noqa: E402
from tests.processes import free_port, wait_until  # noqa: E402
from wallet.management.commands.seed_demo import DEMO_PASSWORD, STAFF  # noqa: E402

BASE_DIR = Path(__file__).resolve().parent.parent
OUT = BASE_DIR / "screenshots"
PAGES = {"home": "/app/", "transactions": "/app/transactions", "analytics": "/app/analytics"}
PAGES["exports"] = "/app/exports"
WIDTHS = {"desktop": (1280, 800), "phone": (375, 740)}
PY = sys.executable


def _listening(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
            return True
    except OSError:
        return False


def _shot(page, name: str) -> None:
    target = OUT / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    sys.stdout.write(f"{target.relative_to(BASE_DIR)}\n")


def admin_pages(browser, base: str, label: str, width: int, height: int) -> None:
    """The support admin as the demo staff member: Asha's wallet, and the page a freeze asks
    for its reason on (left with "No, take me back": nothing is frozen)."""
    context = browser.new_context(base_url=base, viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto("/admin/login/")
    page.get_by_label("Email").fill(STAFF[0])
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/")
    page.goto("/admin/wallet/wallet/?q=asha")
    page.locator(".field-balance_inr a").first.click()
    page.wait_for_url(re.compile(r"/admin/wallet/wallet/[0-9]+/change/"))
    _shot(page, f"admin-wallet-{label}-{width}")
    page.goto("/admin/wallet/wallet/?q=asha")
    page.locator("input.action-select").first.check()
    page.locator("select[name=action]").select_option("freeze")
    page.get_by_role("button", name="Go").click()
    page.get_by_label("Reason").wait_for()
    _shot(page, f"admin-freeze-{label}-{width}")
    page.get_by_role("link", name="No, take me back").click()
    context.close()


def main() -> int:
    http, ws = free_port(), free_port()
    env = {
        **os.environ,
        "QUICKPE_WEBSOCKET_URL": f"ws://127.0.0.1:{ws}/ws/events/",
        "CSRF_TRUSTED_ORIGINS": f"http://127.0.0.1:{http}",  # the pages' sockets go to daphne
    }
    for command in (["migrate", "--no-input", "-v", "0"], ["seed_demo"]):
        subprocess.run([PY, "manage.py", *command], cwd=BASE_DIR, env=env, check=True)  # noqa: S603
    servers = [
        [
            PY,
            "-m",
            "gunicorn",
            "-c",
            "python:quickpe.gunicorn_conf",
            "quickpe.wsgi:application",
            "--bind",
            f"127.0.0.1:{http}",
        ],
        [
            PY,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(ws),
            *DAPHNE_OPTIONS,
            "quickpe.asgi:application",
        ],
    ]
    children = [subprocess.Popen(command, cwd=BASE_DIR, env=env) for command in servers]  # noqa: S603
    try:
        base = f"http://127.0.0.1:{http}"
        wait_until(lambda: _listening(f"{base}/health/live"), what="gunicorn")
        OUT.mkdir(exist_ok=True)
        chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        with sync_playwright() as driver:
            browser = driver.chromium.launch(
                executable_path=chromium, args=["--no-sandbox", "--headless"]
            )
            for label, (width, height) in WIDTHS.items():
                context = browser.new_context(
                    base_url=base, viewport={"width": width, "height": height}
                )
                page = context.new_page()
                page.goto("/signin")
                page.get_by_label("Email").fill("asha@demo.quickpe.test")
                page.get_by_label("Password").fill(DEMO_PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url("**/app/")
                for name, path in PAGES.items():
                    page.goto(path)
                    time.sleep(0.5)  # let the event stream connect: the indicator is in the shot
                    target = OUT / f"{name}-{label}-{width}.png"
                    page.screenshot(path=str(target), full_page=True)
                    sys.stdout.write(f"{target.relative_to(BASE_DIR)}\n")
                context.close()
                admin_pages(browser, base, label, width, height)
            browser.close()
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
