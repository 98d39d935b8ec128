"""The production set-up in deploy/: Django's deployment checks pass with production settings,
the shipped nginx config, in front of gunicorn and two daphne processes, carries a
transfer and its WebSocket event, and a Redis with the shipped settings keeps rate-limit
windows through a crash. nginx comes from Debian (`make test` installs it as root); without it
the nginx test is skipped, saying so."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import urllib.request
import uuid

import pytest
from django.conf import settings
from websockets.sync.client import connect

from quickpe import throttling
from tests.conftest import make_user
from tests.processes import BASE_DIR, Redis, Stack, free_port, wait_until
from tests.test_server_limits import assert_problem_bytes, raw
from wallet.services.money import deposit_create
from wallet.services.users import tokens_issue

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
SHIPPED = BASE_DIR / "deploy" / "nginx" / "quickpe.conf"


def test_a_redis_with_the_shipped_settings_keeps_rate_limit_windows_through_a_crash(
    tmp_path, settings
):
    redis = Redis(tmp_path, config=BASE_DIR / "deploy" / "redis" / "quickpe.conf")
    redis.start()
    try:
        settings.REDIS_URL = redis.url
        assert [throttling.hit("crash-test", "3/m") for _ in range(3)] == [None] * 3
        wait_until(redis.has_written_its_log, what="the append-only file written")
        redis.kill()
        redis.start()
        assert throttling.hit("crash-test", "3/m") > 0  # the window is still full
    finally:
        redis.stop()


def test_check_deploy_is_clean_with_production_settings():
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("QUICKPE_EMBEDDED", "DEBUG", "SECURE_COOKIES", "SECURE_SSL_REDIRECT")
    }
    env.update(
        DATABASE_URL=settings.DATABASE_URL,
        REDIS_URL=settings.REDIS_URL,
        SECRET_KEY=secrets.token_urlsafe(60),
        ALLOWED_HOSTS="pay.example.com",
        BEHIND_PROXY="true",
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout, done.stdout


def loopback_config(stack: Stack, folder, port: int) -> str:
    """The shipped config with loopback ports, no TLS and paths in ``folder``; every location,
    header and timeout as shipped."""
    text = SHIPPED.read_text()
    text = text.replace("127.0.0.1:8000", f"127.0.0.1:{stack.http_port}")
    text = text.replace("127.0.0.1:8001", f"127.0.0.1:{stack.ws_ports[0]}")
    text = text.replace("127.0.0.1:8002", f"127.0.0.1:{stack.ws_ports[1]}")
    text = text.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{port};")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    text = re.sub(r"\n\s*ssl_certificate[^\n]*", "", text)
    text = text.replace("/var/log/nginx/", f"{folder}/")
    text = text.replace("/srv/quickpe/staticfiles/", f"{BASE_DIR / 'static'}/")
    assert text.count(str(stack.http_port)) == 1 and f"127.0.0.1:{port}" in text
    main = f"""
daemon off;
{"user root;" if os.geteuid() == 0 else ""}
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{}}
http {{
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    access_log {folder}/access.log;
    include {folder}/quickpe.conf;
}}
"""
    (folder / "quickpe.conf").write_text(text)
    (folder / "nginx.conf").write_text(main)
    return str(folder / "nginx.conf")


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make test-tools as root)")
def test_a_transfer_and_its_event_through_the_shipped_nginx_config(tmp_path):
    stack = Stack(tmp_path)
    port = free_port()
    stack.extra_environment.update(
        BEHIND_PROXY="true", QUICKPE_TRUSTED_PROXIES="1", ALLOWED_HOSTS="127.0.0.1"
    )
    stack.start()
    folder = tmp_path / "nginx"
    folder.mkdir()
    nginx = subprocess.Popen(  # noqa: S603
        [NGINX, "-c", loopback_config(stack, folder, port), "-p", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{base}/health/live"), what="nginx")
        alice, bob = make_user("Alice"), make_user("Bob")
        deposit_create(user=alice, amount=100_00)
        alice_token, bob_token = tokens_issue(alice)["access"], tokens_issue(bob)["access"]
        with connect(f"ws://127.0.0.1:{port}/ws/events/?token={bob_token}") as socket:
            hello = json.loads(socket.recv(timeout=10))
            assert hello["type"] == "hello"
            request = urllib.request.Request(  # noqa: S310 - loopback only
                f"{base}/api/v1/transfers",
                data=json.dumps({"recipient": bob.quickpe_id, "amount": "7.00"}).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {alice_token}",
                    "Idempotency-Key": uuid.uuid4().hex,
                },
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                assert response.status == 201
                assert response.headers["X-Request-ID"]  # nginx's $request_id, carried through
            frames = [json.loads(socket.recv(timeout=10)) for _ in range(3)]
        assert frames[0]["type"] == "balance:update" and frames[0]["data"]["balance"] == "7.00"
        # Static files from the folder, /metrics never through the public server.
        with urllib.request.urlopen(f"{base}/static/dashboard/app.css", timeout=10) as css:  # noqa: S310
            assert css.status == 200
        with pytest.raises(urllib.error.HTTPError) as hidden:
            urllib.request.urlopen(f"{base}/metrics", timeout=10)  # noqa: S310
        assert hidden.value.code == 404
        # nginx's own refusals are problem+json too, like gunicorn's and the app's.
        for head, status, code in [
            (b"GET /?q=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
                431,
                "header_fields_too_large",
            ),
            (
                b"POST /api/v1/transfers HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                413,
                "payload_too_large",
            ),
        ]:
            assert_problem_bytes(raw(port, head), status, code)
        access = (folder / "quickpe.access.log").read_text()
        assert "/ws/events/" in access and bob_token not in access
    finally:
        nginx.terminate()
        nginx.wait(timeout=15)
        stack.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback only
            return True
    except OSError:
        return False
