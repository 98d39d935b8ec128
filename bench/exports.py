"""``make bench`` (exports): time and peak memory to build a statement of N ledger lines.

Runs under ``quickpe.embedded run``. A fresh database ``quickpe_bench_exports`` on the same
server (the development database is never touched), migrated; one user whose wallet holds
max(BENCH_EXPORT_LINES) ledger lines (inserted with one SQL statement, a second apart). Then,
for each size and format, a fresh Python process builds one statement export with the real task
function (``analytics.tasks.export_build``: claim, server-side cursor, writer, storage, events)
and reports wall time, rows, file size and its peak RSS next to its RSS before the build, so a
flat memory profile shows as the same peak whatever the size.

Targets (issue 5): CSV under 5 s and PDF under 60 s for 100,000 lines; peak RSS under 200 MB
at every size.
Environment: BENCH_EXPORT_LINES [10000,100000,300000], BENCH_EXPORT_FORMATS [csv,pdf].
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.run import BASE_DIR, PY, RESULTS_DIR, bench_database, recreate_database

TARGET_SECONDS = {"csv": 5.0, "pdf": 60.0}
TARGET_PEAK_MB = 200.0
TARGET_LINES = 100_000
EMAIL = "statement@bench.quickpe.test"


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quickpe.settings")
    import django

    django.setup()


def setup(lines: int) -> None:
    """The bench user and ``lines`` ledger lines (deposits), balances consistent."""
    _django()
    from django.db import connection

    from wallet.services.users import user_create

    user = user_create(email=EMAIL, password=None, first_name="Statement", last_name="Bench")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO wallet_ledgerentry (wallet_id, kind, direction, amount, balance_after,
                category, description, reference, created_at)
            SELECT w.id, 'deposit', 'credit', 100, 100 * n, 'other', 'Top-up number ' || n,
                'TXNB' || lpad(n::text, 11, '0'), now() - interval '1 second' * (%s - n)
            FROM wallet_wallet w, generate_series(1, %s) AS n WHERE w.user_id = %s
            """,
            [lines, lines, user.pk],
        )
        cursor.execute(
            "UPDATE wallet_wallet SET balance = 100 * %s WHERE user_id = %s", [lines, user.pk]
        )
        cursor.execute("ANALYZE wallet_ledgerentry")


def build(fmt: str, lines: int) -> None:
    """Build one statement of the user's last ``lines`` lines; print the measurements."""
    _django()
    from django.db import connection

    from analytics.models import Export
    from analytics.tasks import export_build
    from wallet.models import LedgerEntry, User

    user = User.objects.get(email=EMAIL)
    with connection.cursor() as cursor:  # the period that holds exactly ``lines`` lines
        cursor.execute(
            "SELECT e.created_at FROM wallet_ledgerentry e"
            " JOIN wallet_wallet w ON w.id = e.wallet_id"
            " WHERE w.user_id = %s ORDER BY e.created_at DESC OFFSET %s LIMIT 1",
            [user.pk, lines - 1],
        )
        start = cursor.fetchone()[0]
    end = LedgerEntry.objects.filter(wallet__user=user).latest("created_at").created_at
    export = Export.objects.create(
        user=user,
        kind="statement",
        format=fmt,
        period_start=start,
        period_end=end + timedelta(seconds=1),
    )
    before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    outcome = export_build(export.pk)
    seconds = time.perf_counter() - started
    export.refresh_from_db()
    from analytics.services import exports_storage

    result = {
        "format": fmt,
        "lines": lines,
        "outcome": outcome,
        "rows": export.rows,
        "seconds": round(seconds, 2),
        "file_mb": round(exports_storage().size(export.file) / 2**20, 1) if export.file else 0,
        "rss_before_mb": round(before_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    sys.stdout.write(json.dumps(result) + "\n")


def main() -> int:
    sizes = [int(n) for n in os.environ.get("BENCH_EXPORT_LINES", "10000,100000,300000").split(",")]
    formats = os.environ.get("BENCH_EXPORT_FORMATS", "csv,pdf").split(",")
    development, database = bench_database("quickpe_bench_exports")
    recreate_database(database, development)
    with tempfile.TemporaryDirectory(prefix="quickpe-bench-exports-") as folder:
        env = {
            **os.environ,
            "DATABASE_URL": database.url,
            "QUICKPE_EXPORT_DIR": folder,
            "QUICKPE_REDIS_PREFIX": "quickpe-bench-exports",
        }

        def step(*args: str, show: bool = True) -> str:
            command = [PY, "-m", "bench.exports", *args]
            if show:
                out(f"$ python -m bench.exports {' '.join(args)}")
            done = subprocess.run(  # noqa: S603
                command, cwd=BASE_DIR, env=env, check=True, capture_output=True, text=True
            )
            return done.stdout

        out("$ python manage.py migrate  (DATABASE_URL=<quickpe_bench_exports>)")
        subprocess.run(  # noqa: S603
            [PY, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=BASE_DIR,
            env=env,
            check=True,
            timeout=300,
        )
        step("setup", str(max(sizes)))
        results = []
        for lines in sizes:
            for fmt in formats:
                result = json.loads(step("build", fmt, str(lines)).strip().splitlines()[-1])
                results.append(result)
                out(
                    f"  {fmt.upper():<3} {lines:>8,} lines: {result['seconds']:>6.2f} s, "
                    f"peak RSS {result['peak_rss_mb']:.0f} MB (before build "
                    f"{result['rss_before_mb']:.0f} MB), file {result['file_mb']} MB, "
                    f"{result['outcome']}"
                )
    # Time targets at the 100,000 lines (or the largest size run, without it); the
    # memory target at every size, since it must hold however long the statement.
    timed = TARGET_LINES if TARGET_LINES in sizes else max(sizes)
    verdicts = [result["peak_rss_mb"] < TARGET_PEAK_MB for result in results]
    verdicts += [
        result["seconds"] < TARGET_SECONDS[result["format"]]
        for result in results
        if result["lines"] == timed
    ]
    verdict = "PASS" if verdicts and all(verdicts) else "FAIL"
    out(
        f"exports: {verdict} (targets: at {timed:,} lines CSV < 5 s and PDF < 60 s; at every "
        f"size peak RSS < {TARGET_PEAK_MB:.0f} MB)"
    )
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    Path(RESULTS_DIR / f"exports-{stamp}.json").write_text(json.dumps(results, indent=2))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["setup"]:
        setup(int(sys.argv[2]))
    elif sys.argv[1:2] == ["build"]:
        build(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main())
