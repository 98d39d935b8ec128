"""Analytics endpoints' latency over a wallet with 1,000,000 ledger lines.

Runs under ``quickpe.embedded run`` (DATABASE_URL/REDIS_URL set):

    .venv/bin/python -m quickpe.embedded run -- .venv/bin/python -m bench.analytics

1. A fresh database ``quickpe_bench_analytics`` on the same server (``quickpe`` is never
   touched), migrated. The bench user and a staff user are made through the services (access
   tokens from ``tokens_issue``); BENCH_ANALYTICS_PARTIES counterparties are bulk-inserted.
2. BENCH_ANALYTICS_LINES ledger lines for the bench user, in one ``INSERT ... SELECT
   generate_series``, spread evenly over the 365 days before now: 55% transfers sent, 30%
   received, 8% deposits, 7% withdrawals; amounts from Rs 1 to about Rs 10,000 (deposits and
   withdrawals larger); transfer categories weighted (food, transport, shopping, ...);
   counterparties skewed so a few dominate. Every transfer also gets its mirror line in the
   counterparty's wallet, inserted in time order with the bench user's, so the bench wallet's
   lines are interleaved with others' in the table as in production (about 1.85M rows in all).
   Balances are not consistent (analytics does not read ``balance_after``); amounts are
   positive. Loading disables triggers for the session (FK checks) when the role may, except
   the one that keeps the analytics figures (enabled ALWAYS for the load). Then ``VACUUM
   ANALYZE``, as autovacuum would do for an append-only table.
3. gunicorn (BENCH_ANALYTICS_WORKERS sync workers) on a free 127.0.0.1 port, then one client
   making BENCH_ANALYTICS_REQUESTS sequential requests per case over real HTTP (after a few
   warm-up ones): every endpoint for the default period (the last 30 days) and for one year,
   for the 1M-line wallet; then a few for two counterparties' wallets, the busiest one (a
   heavy but plausible user, ~70,000 lines) and the median one (a typical user).
4. p50/p95/p99 per case, PASS/FAIL against p95 < 100 ms, and JSON in bench/results/.

BENCH_EXPLAIN=1 also prints ``EXPLAIN (ANALYZE, BUFFERS)`` of each analytics query for the
one-year period, run in-process on the bench database.

What the numbers mean: totals, buckets and categories read whole business days from
``analytics_dailyfigure`` (the ledger summed per wallet, day, kind, direction and category by
a trigger) and the cut days at the ends from the lines; the top counterparties read whole
months from ``analytics_counterpartyfigure`` (per wallet, month and counterparty) and the cut
months from the lines. So a year of the 1M-line wallet reads a few thousand daily figures, one
figure per counterparty and month, and up to about a month of lines at the ends; the default
30 days (seldom a whole month) reads its whole days from figures and its counterparties from
about 82,000 lines. In this table the bench wallet holds over half of the rows, so for it
PostgreSQL may prefer a (bitmap) scan of the table to the covering index: production, where
one wallet is a sliver of the ledger, looks more like the other two wallets.
"""

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from http.client import HTTPConnection
from pathlib import Path

from bench.run import (
    BASE_DIR,
    PY,
    RESULTS_DIR,
    Gunicorn,
    ServerConfig,
    bench_database,
    bench_env,
    out,
    recreate_database,
    show_command,
    stop_all,
)

TARGET_P95_MS = 100.0
WARMUP = 5

_PARTIES = """
    INSERT INTO wallet_user (password, is_superuser, email, quickpe_id, first_name, last_name,
                             is_active, is_staff, date_joined, email_verified, email_verified_at)
    SELECT '!', false, 'party' || i || '@bench.quickpe.test',
           'QP' || lpad((90000000 + i)::text, 8, '0'), 'Party', lpad(i::text, 5, '0'),
           true, false, now(), true, now()
    FROM generate_series(1, %(parties)s) AS i
    RETURNING id
"""
_PARTY_WALLETS = """
    INSERT INTO wallet_wallet (user_id, balance, status, deposited_on_day, outgoing_on_day,
                               created_at, updated_at)
    SELECT id, 0, 'active', 0, 0, now(), now() FROM unnest(%(users)s::bigint[]) AS id
    RETURNING user_id, id
"""
# One row per drawn line: the bench user's line, plus, for a transfer, the counterparty's
# mirror line. Ordered by time, so the table interleaves wallets as the money path would.
_LINES = """
    WITH drawn AS (
        SELECT n,
               %(start)s::timestamptz + (n - 1) * %(step)s::interval
                   + random() * %(step)s::interval AS created_at,
               random() AS k, random() AS c, random() AS a,
               1 + floor(%(parties)s * power(random(), 3))::int AS p
        FROM generate_series(1, %(lines)s) AS n
    ), own AS (
        SELECT n, created_at, a, p,
               CASE WHEN k < 0.55 THEN 'transfer_out' WHEN k < 0.85 THEN 'transfer_in'
                    WHEN k < 0.93 THEN 'deposit' ELSE 'withdrawal' END AS kind,
               CASE WHEN k >= 0.85 THEN 'other'
                    WHEN c < 0.25 THEN 'food' WHEN c < 0.40 THEN 'transport'
                    WHEN c < 0.55 THEN 'shopping' WHEN c < 0.70 THEN 'bills'
                    WHEN c < 0.78 THEN 'entertainment' WHEN c < 0.84 THEN 'health'
                    WHEN c < 0.97 THEN 'transfer' ELSE 'other' END AS category
        FROM drawn
    ), priced AS (
        SELECT own.*,
               CASE kind WHEN 'deposit' THEN 100000 + floor(a * 2000000)
                         WHEN 'withdrawal' THEN 50000 + floor(a * 1000000)
                         ELSE 100 + floor(exp(a * 9.2) * 100) END::bigint AS amount,
               (%(party_users)s::bigint[])[p] AS party_user,
               (%(party_wallets)s::bigint[])[p] AS party_wallet
        FROM own
    )
    INSERT INTO wallet_ledgerentry (wallet_id, kind, direction, amount, balance_after, category,
                                    description, counterparty_id, transfer_id, reference,
                                    created_at)
    SELECT line.wallet_id, line.kind,
           CASE WHEN line.kind IN ('deposit', 'transfer_in') THEN 'credit' ELSE 'debit' END,
           priced.amount, priced.amount, priced.category, '', line.counterparty_id, NULL,
           line.reference, priced.created_at
    FROM priced CROSS JOIN LATERAL (VALUES
        (%(wallet)s::bigint, priced.kind,
         CASE WHEN priced.kind LIKE 'transfer%%' THEN priced.party_user END,
         'BA' || priced.n, 0),
        (CASE WHEN priced.kind LIKE 'transfer%%' THEN priced.party_wallet END,
         CASE priced.kind WHEN 'transfer_out' THEN 'transfer_in' ELSE 'transfer_out' END,
         %(user)s::bigint, 'BB' || priced.n, 1)
    ) AS line(wallet_id, kind, counterparty_id, reference, side)
    WHERE line.wallet_id IS NOT NULL
    ORDER BY priced.n, line.side
"""


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    return {
        "n": len(ordered),
        "p50_ms": round(at(0.50), 1),
        "p95_ms": round(at(0.95), 1),
        "p99_ms": round(at(0.99), 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "max_ms": round(ordered[-1], 1),
    }


def _django_on_bench_database():
    """Set Django up in this child process, whose DATABASE_URL is the bench database."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    import django

    django.setup()
    from django.db import connection

    if connection.settings_dict["NAME"] == "quickpe":
        raise SystemExit("bench.analytics refuses to write to the development database")


def make_users(out_path: Path) -> None:
    """The bench and staff users through the services, and their access tokens."""
    _django_on_bench_database()
    from wallet.services.users import tokens_issue, user_create

    user = user_create(
        email="analytics@bench.quickpe.test", password=None, first_name="Bench", last_name="Heavy"
    )
    staff = user_create(
        email="staff@bench.quickpe.test",
        password=None,
        first_name="Bench",
        last_name="Staff",
        is_staff=True,
    )
    payload = {
        "user_id": user.pk,
        "wallet_id": user.wallet.pk,
        "access": tokens_issue(user)["access"],
        "staff_access": tokens_issue(staff)["access"],
    }
    out_path.write_text(json.dumps(payload))


def make_tokens(out_path: Path, user_ids: list[int]) -> None:
    """Access tokens for bulk-inserted users (a device session each, as at sign-in)."""
    _django_on_bench_database()
    from wallet.models import User
    from wallet.services.users import tokens_issue

    tokens = {str(pk): tokens_issue(User.objects.get(pk=pk))["access"] for pk in user_ids}
    out_path.write_text(json.dumps(tokens))


_FIGURES_TRIGGER = "ALTER TABLE wallet_ledgerentry ENABLE {when} TRIGGER analytics_figures_insert"


def load_ledger(bench, users: dict, *, lines: int, parties: int) -> dict:
    started = time.monotonic()
    with bench.connect() as connection:
        party_users = [row[0] for row in connection.execute(_PARTIES, {"parties": parties})]
        wallets = dict(connection.execute(_PARTY_WALLETS, {"users": party_users}).fetchall())
        now = datetime.now(UTC)
        [is_superuser] = connection.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        with connection.transaction():
            if is_superuser:
                # Consistent rows by construction: skip the per-row FK triggers while loading,
                # but not the one that keeps the analytics figures (it runs once, for the lot).
                connection.execute("SET LOCAL session_replication_role = replica")
                connection.execute(_FIGURES_TRIGGER.format(when="ALWAYS"))
            else:
                out("  (triggers stay on: only a superuser may set session_replication_role)")
            connection.execute("SELECT setseed(0.2026)")
            connection.execute(
                _LINES,
                {
                    "start": now - timedelta(days=365),
                    "step": timedelta(days=365) / lines,
                    "lines": lines,
                    "parties": parties,
                    "party_users": party_users,
                    "party_wallets": [wallets[user] for user in party_users],
                    "wallet": users["wallet_id"],
                    "user": users["user_id"],
                },
            )
            if is_superuser:
                connection.execute(_FIGURES_TRIGGER.format(when=""))
        loaded = time.monotonic() - started
        connection.execute("VACUUM (ANALYZE) wallet_ledgerentry")
        for table in ("analytics_dailyfigure", "analytics_counterpartyfigure"):
            connection.execute(f"VACUUM (ANALYZE) {table}")
        total, own = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE wallet_id = %s) FROM wallet_ledgerentry",
            [users["wallet_id"]],
        ).fetchone()
        # Two other wallets to measure: the busiest counterparty (a heavy but plausible user)
        # and the one at the median, a typical user.
        by_lines = connection.execute(
            "SELECT w.user_id, count(*) FROM wallet_ledgerentry AS l"
            " JOIN wallet_wallet AS w ON w.id = l.wallet_id"
            " WHERE l.wallet_id <> %s GROUP BY w.user_id ORDER BY 2 DESC, 1",
            [users["wallet_id"]],
        ).fetchall()
        size = connection.execute(
            "SELECT pg_size_pretty(pg_table_size('wallet_ledgerentry')),"
            " pg_size_pretty(pg_relation_size('analytics_ledger_wallet_figures')),"
            " pg_size_pretty(pg_relation_size('analytics_ledger_created_brin'))"
        ).fetchone()
    return {
        "rows_total": total,
        "rows_bench_wallet": own,
        "load_s": round(loaded, 1),
        "vacuum_s": round(time.monotonic() - started - loaded, 1),
        "table_size": size[0],
        "figures_index_size": size[1],
        "brin_index_size": size[2],
        "heavy": {"user_id": by_lines[0][0], "lines": by_lines[0][1]},
        "typical": {
            "user_id": by_lines[len(by_lines) // 2][0],
            "lines": by_lines[len(by_lines) // 2][1],
        },
    }


def cases(data: dict) -> list[tuple[str, str, str]]:
    """(name, path, whose token) for each measured request."""
    today = datetime.now(UTC).date()
    year = f"from={today - timedelta(days=364)}&to={today}"
    heavy = f"{data['heavy']['lines']:,}-line wallet"
    typical = f"{data['typical']['lines']:,}-line wallet"
    return [
        ("summary 30d", "/api/v1/analytics/summary", "user"),
        ("summary 1y", f"/api/v1/analytics/summary?{year}", "user"),
        ("timeseries day 30d", "/api/v1/analytics/timeseries?interval=day", "user"),
        ("timeseries day 1y", f"/api/v1/analytics/timeseries?interval=day&{year}", "user"),
        ("timeseries week 1y", f"/api/v1/analytics/timeseries?interval=week&{year}", "user"),
        ("timeseries month 1y", f"/api/v1/analytics/timeseries?interval=month&{year}", "user"),
        ("categories 30d", "/api/v1/analytics/categories", "user"),
        ("categories 1y", f"/api/v1/analytics/categories?{year}", "user"),
        ("insights", "/api/v1/analytics/insights", "user"),
        ("kpi", "/api/v1/analytics/kpi", "staff"),
        (f"summary 1y, {heavy}", f"/api/v1/analytics/summary?{year}", "heavy"),
        (f"timeseries 1y, {heavy}", f"/api/v1/analytics/timeseries?{year}", "heavy"),
        (f"categories 1y, {heavy}", f"/api/v1/analytics/categories?{year}", "heavy"),
        (f"insights, {heavy}", "/api/v1/analytics/insights", "heavy"),
        (f"summary 1y, {typical}", f"/api/v1/analytics/summary?{year}", "typical"),
        (f"timeseries 1y, {typical}", f"/api/v1/analytics/timeseries?{year}", "typical"),
        (f"insights, {typical}", "/api/v1/analytics/insights", "typical"),
    ]


def measure(port: int, path: str, token: str, requests: int) -> dict:
    samples = []
    for number in range(WARMUP + requests):
        connection = HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        connection.close()
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        if number >= WARMUP:
            samples.append(elapsed)
    return percentiles(samples)


def explain(env: dict[str, str], users: dict) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every query the one-year analytics calls make."""
    code = f"""
import os, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
django.setup()
from datetime import datetime, timedelta, UTC
from django.db import connection
from django.utils import timezone
from analytics import insights, selectors
from wallet.models import User
assert connection.settings_dict["NAME"] != "quickpe"
user = User.objects.get(pk={users["user_id"]})
end = timezone.now()
start = end - timedelta(days=365)
captured = []
def capture(execute, sql, params, many, context):
    captured.append((sql, params))
    return execute(sql, params, many, context)
calls = [
    ("summary 1y", lambda: selectors.summary_for(user=user, start=start, end=end)),
    ("timeseries day 1y", lambda: selectors.timeseries_for(
        user=user, start=start, end=end, interval="day")),
    ("categories 1y", lambda: selectors.categories_for(user=user, start=start, end=end)),
    ("insights", lambda: insights.insights_for(user=user, now=end)),
    ("kpi", lambda: selectors.kpi_figures(now=end)),
]
for name, call in calls:
    captured.clear()
    with connection.execute_wrapper(capture):
        call()
    for sql, params in captured:
        if "wallet_ledgerentry" not in sql:
            continue
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print(f"--- {{name}}")
            print("\\n".join(row[0] for row in cursor.fetchall()))
"""
    subprocess.run([PY, "-c", code], cwd=BASE_DIR, env=env, check=True, timeout=600)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    lines = int(os.environ.get("BENCH_ANALYTICS_LINES", "1000000"))
    parties = int(os.environ.get("BENCH_ANALYTICS_PARTIES", "2000"))
    requests = int(os.environ.get("BENCH_ANALYTICS_REQUESTS", "100"))
    workers = int(os.environ.get("BENCH_ANALYTICS_WORKERS", "2"))
    database = os.environ.get("BENCH_ANALYTICS_DATABASE", "quickpe_bench_analytics")
    development, bench = bench_database(database)
    tag = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    env = bench_env(bench)
    report: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "settings": {
            "lines": lines,
            "parties": parties,
            "requests": requests,
            "workers": workers,
            "database": database,
        },
        "machine": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
        "command": "python -m quickpe.embedded run -- python -m bench.analytics",
        "cases": [],
    }
    out(
        f"QuickPe analytics bench: {lines:,} ledger lines for one wallet, {parties} "
        f"counterparties, {requests} requests per case; {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())} at start"
    )

    out(f"\n[1/3] Fresh database {bench.name!r} (the {development!r} database is untouched)")
    recreate_database(bench, development)
    migrate = [PY, "manage.py", "migrate", "--no-input", "-v", "0"]
    out(f"$ {show_command(['python', *migrate[1:]], {'DATABASE_URL': f'<{bench.name}>'})}")
    subprocess.run(migrate, cwd=BASE_DIR, env=env, check=True, timeout=300)
    with tempfile.TemporaryDirectory(prefix="quickpe-bench-analytics-") as temp:
        users_json = Path(temp) / "users.json"
        subprocess.run(
            [PY, "-m", "bench.analytics", "--make-users", str(users_json)],
            cwd=BASE_DIR,
            env=env,
            check=True,
            timeout=120,
        )
        users = json.loads(users_json.read_text())

    out(f"\n[2/3] {lines:,} ledger lines over 365 days (INSERT ... SELECT generate_series)")
    report["data"] = load_ledger(bench, users, lines=lines, parties=parties)
    data = report["data"]
    out(
        f"  -> {data['rows_total']:,} rows in wallet_ledgerentry, {data['rows_bench_wallet']:,} "
        f"of them the bench wallet's; loaded in {data['load_s']}s, VACUUM ANALYZE "
        f"{data['vacuum_s']}s; table {data['table_size']}, analytics_ledger_wallet_figures "
        f"{data['figures_index_size']}, BRIN {data['brin_index_size']}"
    )
    with tempfile.TemporaryDirectory(prefix="quickpe-bench-analytics-") as temp:
        tokens_json = Path(temp) / "tokens.json"
        others = [data["heavy"]["user_id"], data["typical"]["user_id"]]
        subprocess.run(
            [PY, "-m", "bench.analytics", "--make-tokens", str(tokens_json), *map(str, others)],
            cwd=BASE_DIR,
            env=env,
            check=True,
            timeout=120,
        )
        minted = json.loads(tokens_json.read_text())
    tokens = {
        "user": users["access"],
        "staff": users["staff_access"],
        "heavy": minted[str(data["heavy"]["user_id"])],
        "typical": minted[str(data["typical"]["user_id"])],
    }
    if os.environ.get("BENCH_EXPLAIN") == "1":
        explain(env, users)

    config = ServerConfig.parse(f"sync:{workers}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    server = Gunicorn(config, env, RESULTS_DIR / f"gunicorn-analytics-{tag}.log")
    out(f"\n[3/3] Latency over HTTP, one client, {requests} sequential requests per case")
    out(f"$ {server.shown.replace('<quickpe_bench>', f'<{bench.name}>')}")
    try:
        server.start()
        for name, path, token in cases(data):
            figures = measure(server.port, path, tokens[token], requests)
            result = {"case": name, "path": path, **figures}
            result["pass"] = result["p95_ms"] < TARGET_P95_MS
            report["cases"].append(result)
            out(
                f"  {name:<38} p50 {result['p50_ms']:7.1f} ms  p95 {result['p95_ms']:7.1f} ms  "
                f"p99 {result['p99_ms']:7.1f} ms  max {result['max_ms']:7.1f} ms  "
                f"{'PASS' if result['pass'] else 'FAIL'}  GET {path}"
            )
    finally:
        server.stop()

    report["finished_at"] = datetime.now(UTC).isoformat()
    results_file = RESULTS_DIR / f"analytics-{tag}.json"
    results_file.write_text(json.dumps(report, indent=2, default=str))
    failing = [case["case"] for case in report["cases"] if not case["pass"]]
    out(
        f"\nTarget p95 < {TARGET_P95_MS:.0f} ms: "
        + ("PASS for every case" if not failing else f"FAIL for {', '.join(failing)}")
    )
    out(f"Results: {results_file.relative_to(BASE_DIR)}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-users"]:
        make_users(Path(sys.argv[2]))
        sys.exit(0)
    if sys.argv[1:2] == ["--make-tokens"]:
        make_tokens(Path(sys.argv[2]), [int(pk) for pk in sys.argv[3:]])
        sys.exit(0)
    from bench import lifecycle

    lifecycle.run(main, stop_all=stop_all, out=out, stopping="stopping gunicorn")
