"""Fill the bench database with funded users and mint their access tokens.

Run by ``bench.run`` as ``python -m bench.setup_data OUT.json`` with ``DATABASE_URL`` pointing at
the bench database (never the development one) and the limits raised through the environment.
Users, wallets and deposits go through QuickPe's own services, so every row (audit entries,
chain heads, daily counters) is what the API would have written. Passwords are unusable:
the tokens come from ``tokens_issue``, the same call sign-in makes, without paying for Argon2.
"""

import json
import os
import sys
import time

import django


def main(argv: list[str]) -> int:
    out_path = argv[0]
    count = int(os.environ.get("BENCH_USERS", "200"))
    funds = int(os.environ.get("BENCH_FUNDS_PAISE", str(10_000_000 * 100)))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    django.setup()

    from django.conf import settings
    from django.db import connection

    from wallet.services.money import deposit_create
    from wallet.services.users import tokens_issue, user_create

    name = connection.settings_dict["NAME"]
    if name == "quickpe":
        raise SystemExit("bench.setup_data refuses to write to the development database")

    started = time.monotonic()
    users = []
    for number in range(count):
        user = user_create(
            email=f"bench{number:04d}@bench.quickpe.test",
            password=None,
            first_name="Bench",
            last_name=f"User {number:04d}",
        )
        deposit_create(user=user, amount=funds, description="Bench funds")
        users.append(
            {"id": user.pk, "quickpe_id": user.quickpe_id, "access": tokens_issue(user)["access"]}
        )
    ids = [user["id"] for user in users]
    payload = {
        "database": name,
        "users": users,
        "first_user_id": min(ids),
        "contiguous": ids == list(range(min(ids), min(ids) + len(ids))),
        "funds_paise": funds,
        "audit_chains": settings.QUICKPE_AUDIT_CHAINS,
        "seconds": round(time.monotonic() - started, 2),
    }
    with open(out_path, "w") as handle:
        json.dump(payload, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
