"""The admin's search by the start of a name or an email over a large users table.

Runs under ``quickpe.embedded run`` (DATABASE_URL/REDIS_URL set):

    .venv/bin/python -m quickpe.embedded run -- .venv/bin/python -m bench.admin_search

1. A fresh database ``quickpe_bench_admin`` on the same server (``quickpe`` is never touched),
   migrated (so with the search indexes of migration wallet.0008).
2. BENCH_ADMIN_USERS users (default 1,000,000) in one ``INSERT ... SELECT generate_series``:
   every combination of 40 common first names and 40 last names, over and over, so a first
   name is shared by 1 user in 40 (25,000) and a full name by 1 in 1,600 (625); one user with
   a name nobody else has; an email per user; a wallet each; BENCH_ADMIN_LINES ledger lines
   (default 2,000,000) spread over the wallets. Then ``VACUUM ANALYZE``.
3. In a child process with Django on that database, a staff member's admin list pages are
   requested through Django's test client (in process, no HTTP), BENCH_ADMIN_REQUESTS times
   each after a warm-up: the users, wallets and ledger lines searched by a common first name,
   a full name's start, a rare name, an email's start and a QuickPe ID. For each page the
   SQL it ran against the users' search is run again under ``EXPLAIN (ANALYZE, BUFFERS)``,
   with the indexes and, in a transaction rolled back afterwards, without them.
4. A table and JSON in bench/results/admin_search-<time>.json.

BENCH_ADMIN_REUSE=1 measures again on the database an earlier run left (steps 1 and 2 skipped).
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import (
    BASE_DIR,
    PY,
    RESULTS_DIR,
    bench_database,
    bench_env,
    out,
    recreate_database,
    show_command,
    table,
)

# Words separated by spaces, split by PostgreSQL (string_to_array) when the users are made.
FIRST_NAMES = (
    "Aarav Aditi Akash Ananya Arjun Asha Deepak Divya Gaurav Isha Karan Kavya Manish Meera "
    "Mohan Neha Nikhil Pooja Priya Rahul Rajesh Ravi Rohan Sachin Sanjay Sneha Sunita Suresh "
    "Tanvi Uday Varun Vidya Vikram Vinod Yash Zoya Farhan Imran Salma Gurpreet"
)
LAST_NAMES = (
    "Agarwal Bansal Bhat Chatterjee Das Desai Ghosh Gupta Iyer Jain Joshi Kapoor Khan Kulkarni "
    "Kumar Menon Mehta Mishra Nair Naidu Pandey Patel Pillai Rao Reddy Roy Saxena Sen Shah "
    "Sharma Singh Sinha Srinivasan Thakur Tiwari Trivedi Verma Yadav Ali Fernandes"
)
RARE = ("Zorawar", "Quasimodo")

_USERS = """
    INSERT INTO wallet_user (password, is_superuser, email, quickpe_id, first_name, last_name,
                             is_active, is_staff, date_joined, email_verified, email_verified_at)
    SELECT '!', false,
           lower(first[1 + g %% 40]) || '.' || lower(last[1 + (g / 40) %% 40]) || g
             || '@bench.quickpe.test',
           'QP' || lpad(g::text, 8, '0'),
           first[1 + g %% 40], last[1 + (g / 40) %% 40],
           true, false, now(), true, now()
    FROM generate_series(1, %(users)s) AS g,
         string_to_array(%(first)s, ' ') AS first,
         string_to_array(%(last)s, ' ') AS last
"""
_RARE_USER = """
    INSERT INTO wallet_user (password, is_superuser, email, quickpe_id, first_name, last_name,
                             is_active, is_staff, date_joined, email_verified, email_verified_at)
    VALUES ('!', false, 'zq@bench.quickpe.test', 'QP99999999', %s, %s, true, false, now(),
            true, now())
"""
_WALLETS = """
    INSERT INTO wallet_wallet (user_id, balance, status, deposited_on_day, outgoing_on_day,
                               created_at, updated_at)
    SELECT id, 100, 'active', 0, 0, now(), now() FROM wallet_user
"""
_LINES = """
    INSERT INTO wallet_ledgerentry (wallet_id, kind, direction, amount, balance_after, category,
                                    description, reference, created_at)
    SELECT %(first_wallet)s + (g::bigint * 7919) %% %(wallets)s, 'deposit', 'credit', 100, 100,
           'other', 'Bench', 'TXNB' || lpad(g::text, 11, '0'),
           now() - (%(lines)s - g) * interval '1 second'
    FROM generate_series(1, %(lines)s) AS g
"""
# A row of a list's results: it starts with the action checkbox or the first field.
_RESULT_ROW = re.compile(r'<tr>\s*<t[dh] class="(?:action-checkbox|field-)')
_SEARCH_INDEXES = (
    "wallet_user_full_name_upper",
    "wallet_user_last_name_upper",
    "wallet_user_email_upper",
)


def load(bench, *, users: int, lines: int) -> dict:
    started = time.monotonic()
    with bench.connect() as connection:
        with connection.transaction():
            # Rows consistent by construction: skip the per-row FK and analytics triggers.
            connection.execute("SET LOCAL session_replication_role = replica")
            connection.execute(_USERS, {"first": FIRST_NAMES, "last": LAST_NAMES, "users": users})
            connection.execute(_RARE_USER, RARE)
            connection.execute(_WALLETS)
            first_wallet, wallets = connection.execute(
                "SELECT min(id), count(*) FROM wallet_wallet"
            ).fetchone()
            connection.execute(
                _LINES, {"first_wallet": first_wallet, "wallets": wallets, "lines": lines}
            )
        loaded = time.monotonic() - started
        for name in ("wallet_user", "wallet_wallet", "wallet_ledgerentry"):
            connection.execute(f"VACUUM (ANALYZE) {name}")
        sizes = dict(
            connection.execute(
                "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class"
                " WHERE relname = ANY(%s)",
                [["wallet_user", *_SEARCH_INDEXES]],
            ).fetchall()
        )
    return {"load_s": round(loaded, 1), "sizes": sizes}


def cases(first_user_quickpe_id: str) -> list[tuple[str, str]]:
    return [
        ("users: a first name", "/admin/wallet/user/?q=priya"),
        ("users: a full name's start", "/admin/wallet/user/?q=Priya Sha"),
        ("users: a rare name", "/admin/wallet/user/?q=zorawar"),
        ("users: an email's start", "/admin/wallet/user/?q=priya.sharma1"),
        ("users: a QuickPe ID", f"/admin/wallet/user/?q={first_user_quickpe_id}"),
        ("wallets: a full name's start", "/admin/wallet/wallet/?q=Priya Sha"),
        ("wallets: a rare name", "/admin/wallet/wallet/?q=quasimodo"),
        ("ledger: a full name's start", "/admin/wallet/ledgerentry/?q=Priya Sha"),
        ("ledger: a rare name", "/admin/wallet/ledgerentry/?q=zorawar"),
    ]


def measure(requests: int) -> dict:
    """In a child process on the bench database: each case's page times and query plans."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    import django

    django.setup()
    from django.db import connection, transaction
    from django.test import Client

    from wallet.models import User
    from wallet.services.users import user_create

    if connection.settings_dict["NAME"] == "quickpe":
        raise SystemExit("bench.admin_search refuses to run on the development database")
    staff = User.objects.filter(email="staff@bench.quickpe.test").first() or user_create(
        email="staff@bench.quickpe.test",
        password=None,
        first_name="Bench",
        last_name="Staff",
        is_staff=True,
        is_superuser=True,
    )
    browser = Client(HTTP_HOST="localhost")
    browser.force_login(staff)
    first = User.objects.get(quickpe_id="QP00000001")
    results = []
    for name, path in cases(first.quickpe_id):
        captured: list[tuple[str, tuple]] = []

        def capture(execute, sql, params, many, context, captured=captured):
            captured.append((sql, params))
            return execute(sql, params, many, context)

        sys.stderr.write(f"  {name} ...\n")
        with connection.execute_wrapper(capture):
            response = browser.get(path, secure=True)
        assert response.status_code == 200, (path, response.status_code)
        shown = len(_RESULT_ROW.findall(response.content.decode()))
        timings = []
        for _ in range(requests + 2):
            started = time.perf_counter()
            browser.get(path, secure=True)
            timings.append((time.perf_counter() - started) * 1000)
        timings = timings[2:]  # warm-up
        searched = [(sql, params) for sql, params in captured if "UPPER(" in sql]
        plans = {"with_indexes": [], "without_indexes": []}
        for sql, params in searched:
            plans["with_indexes"].append(explain(connection, sql, params))
        with transaction.atomic():
            with connection.cursor() as cursor:
                for index in _SEARCH_INDEXES:
                    cursor.execute(f'DROP INDEX "{index}"')
            for sql, params in searched:
                plans["without_indexes"].append(explain(connection, sql, params))
            transaction.set_rollback(True)
        sys.stderr.write(f"  {name}: page p50 {statistics.median(timings):.1f} ms\n")
        results.append(
            {
                "case": name,
                "path": path,
                "rows_shown": shown,
                "page_ms": {
                    "p50": round(statistics.median(timings), 1),
                    "max": round(max(timings), 1),
                },
                "queries": len(captured),
                "plans": plans,
            }
        )
    return {"cases": results}


def explain(connection, sql: str, params) -> dict:
    """The query's plan and time; a query cut off by the statement timeout (30 s by default)
    says so instead."""
    from django.db import OperationalError, transaction

    kind = "count" if "COUNT(" in sql.upper() else "page"
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            lines = [row[0] for row in cursor.fetchall()]
    except OperationalError as error:
        return {"execution_ms": None, "kind": kind, "error": str(error).strip(), "sql": sql}
    execution = next(line for line in lines if line.startswith("Execution Time"))
    return {
        "execution_ms": float(execution.split(":")[1].split()[0]),
        "kind": kind,
        "plan": lines,
    }


def _total_ms(plans: list[dict]) -> str:
    if any(plan["execution_ms"] is None for plan in plans):
        return "timeout"
    return f"{sum(plan['execution_ms'] for plan in plans):.1f}"


def main() -> int:
    if sys.argv[1:2] == ["--measure"]:
        report = measure(int(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(report))
        return 0
    users = int(os.environ.get("BENCH_ADMIN_USERS", "1000000"))
    lines = int(os.environ.get("BENCH_ADMIN_LINES", "2000000"))
    requests = int(os.environ.get("BENCH_ADMIN_REQUESTS", "20"))
    database = os.environ.get("BENCH_ADMIN_DATABASE", "quickpe_bench_admin")
    development, bench = bench_database(database)
    env = bench_env(bench)
    out(
        f"QuickPe admin search bench: {users:,} users, {lines:,} ledger lines, {requests} "
        f"requests per page; {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start"
    )
    if os.environ.get("BENCH_ADMIN_REUSE") == "1":
        out(f"\n[1-2/3] Reusing the database {bench.name!r} of an earlier run")
        data = {"reused": True}
    else:
        out(f"\n[1/3] Fresh database {bench.name!r} (the {development!r} database is untouched)")
        recreate_database(bench, development)
        migrate = [PY, "manage.py", "migrate", "--no-input", "-v", "0"]
        out(f"$ {show_command(['python', *migrate[1:]], {'DATABASE_URL': f'<{bench.name}>'})}")
        subprocess.run(migrate, cwd=BASE_DIR, env=env, check=True, timeout=300)

        out(f"\n[2/3] {users:,} users with wallets and {lines:,} ledger lines")
        data = load(bench, users=users, lines=lines)
        out(f"  -> loaded in {data['load_s']}s; sizes {data['sizes']}")

    out("\n[3/3] Admin list pages, in process (Django's test client)")
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    measured_json = RESULTS_DIR / f".admin_search-{tag}.partial.json"
    RESULTS_DIR.mkdir(exist_ok=True)
    subprocess.run(
        [PY, "-m", "bench.admin_search", "--measure", str(requests), str(measured_json)],
        cwd=BASE_DIR,
        env=env,
        check=True,
        timeout=1800,
    )
    measured = json.loads(measured_json.read_text())
    measured_json.unlink()
    rows = []
    for case in measured["cases"]:
        rows.append(
            [
                case["case"],
                str(case["rows_shown"]),
                f"{case['page_ms']['p50']:.1f}",
                _total_ms(case["plans"]["with_indexes"]),
                _total_ms(case["plans"]["without_indexes"]),
            ]
        )
    out(
        table(
            ["page", "rows", "page p50 ms", "search SQL ms (indexes)", "same SQL ms (no index)"],
            rows,
        )
    )
    report = {
        "started_at": tag,
        "settings": {"users": users, "lines": lines, "requests": requests},
        "machine": {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "command": "python -m quickpe.embedded run -- python -m bench.admin_search",
        "data": data,
        **measured,
    }
    target = RESULTS_DIR / f"admin_search-{tag}.json"
    target.write_text(json.dumps(report, indent=2))
    out(f"\n{target.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
