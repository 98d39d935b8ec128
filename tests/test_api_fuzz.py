"""Schemathesis against the live API: every check, on every operation, as a signed-in user.

The server is real (gunicorn on the test database, its own Redis); Schemathesis reads
`/api/schema/` and sends what the schema allows and what it does not: any 5xx, an undeclared
status, a body that does not match its schema, a schema-violating request accepted, a request
without its token accepted, fails the test. `tests/schemathesis.toml` holds the configuration
and the few business rules a JSON Schema cannot state.

`make test` runs a bounded budget with a fixed seed (the same requests every run);
`make fuzz` runs a larger one with a fresh seed (QUICKPE_FUZZ_EXAMPLES, QUICKPE_FUZZ_SEED).
"""

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.processes import BASE_DIR, running_stack

SCHEMATHESIS = Path(BASE_DIR, ".venv", "bin", "st")
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = os.environ.get("QUICKPE_FUZZ_EXAMPLES", "8")
SEED = os.environ.get("QUICKPE_FUZZ_SEED", "20261207")

pytestmark = pytest.mark.django_db(transaction=True)

# Limits off: the fuzzer's bursts would otherwise be 429s (declared, so not failures, but they
# would hide what the operations answer).
UNLIMITED = {
    name: "off"
    for name in (
        "QUICKPE_MONEY_RATE",
        "QUICKPE_SIGNIN_RATE",
        "QUICKPE_SIGNIN_IP_RATE",
        "QUICKPE_SIGNIN_ACCOUNT_RATE",
        "QUICKPE_SIGNUP_IP_RATE",
        "QUICKPE_SEARCH_RATE",
        "QUICKPE_EXPORT_RATE",
    )
}


def _account(stack, email: str, password: str) -> str:
    """A user signed up through the API (so the server hashed the password), with money."""
    status, body = stack.request(
        "POST",
        "/api/v1/auth/signup",
        {"email": email, "password": password, "first_name": "Fuzz", "last_name": "Tester"},
    )
    assert status == 201, body
    status, body = stack.request(
        "POST",
        "/api/v1/wallet/deposits",
        {"amount": "5000.00"},
        token=body["access"],
        key=uuid.uuid4().hex,
    )
    assert status == 201, body
    return email


def test_schemathesis_finds_no_failure(tmp_path):
    password = f"fuzz-{uuid.uuid4().hex}"
    with running_stack(tmp_path, web_only=True, **UNLIMITED) as stack:
        email = _account(stack, f"fuzz-{uuid.uuid4().hex[:8]}@example.com", password)
        # Someone to pay and ask: the fuzzer's recipients are mostly unknown, a few real.
        _account(stack, "payee@example.com", password)
        command = [str(SCHEMATHESIS), "--no-color", "--config-file", str(CONFIG), "run"]
        command += [f"http://127.0.0.1:{stack.http_port}/api/schema/", "--checks", "all"]
        command += ["--max-examples", EXAMPLES, "--workers", "2"]
        if SEED:
            command += ["--seed", SEED]
        result = subprocess.run(  # noqa: S603 - our own venv's binary
            command,
            cwd=tmp_path,  # its cache and reports stay out of the checkout
            env={
                **os.environ,
                "QUICKPE_FUZZ_EMAIL": email,
                "QUICKPE_FUZZ_PASSWORD": password,
            },
            capture_output=True,
            text=True,
            timeout=900,
        )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-30000:]
    # It really ran: every operation of the schema selected and tested.
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, report[-3000:]
    assert selected[1] == selected[2] == tested[1], report[-3000:]
