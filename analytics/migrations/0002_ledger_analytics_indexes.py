# Indexes on the wallet app's ledger that exist only for the analytics queries
# (analytics/selectors.py, analytics/insights.py), so they live, and are documented, with the
# code that needs them rather than on wallet.LedgerEntry's Meta. Django does not track them
# (plain SQL, no model state), so makemigrations never tries to drop them.
#
# - analytics_ledger_wallet_figures: every per-user figure is "this wallet's lines in a time
#   range, summed by kind / direction / category / counterparty". With those columns in
#   INCLUDE, PostgreSQL answers from the index alone (an index-only scan) instead of visiting
#   the table once per line; a wallet's lines are spread over the whole table, so those visits
#   are most of the cost on a long history (`BENCH_EXPLAIN=1 python -m bench.analytics` prints
#   the plans). `id` is in the key so that this index can also serve `/transactions`
#   (created_at DESC, id DESC, scanned backwards), which would let wallet_ledger_wallet_recent
#   go if the wallet app wants: two such indexes cost every ledger insert twice.
# - analytics_ledger_created_brin: the staff KPIs read every wallet's lines of the last 30
#   days. The ledger is append-only and created_at grows with the table, which is what BRIN is
#   for: a few pages, nearly free to keep up on insert, instead of another B-tree.
#
# CONCURRENTLY so that building them on a large ledger does not block the money path's inserts;
# that cannot run inside a transaction, hence atomic = False. IF NOT EXISTS lets a re-run skip
# an existing index (one left INVALID by a failed concurrent build must be dropped by hand).

from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("analytics", "0001_initial"),
        ("wallet", "0003_money_requests_and_device_sessions"),
    ]

    operations = [
        migrations.RunSQL(
            sql=(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS analytics_ledger_wallet_figures"
                " ON wallet_ledgerentry (wallet_id, created_at, id)"
                " INCLUDE (kind, direction, amount, category, counterparty_id)"
            ),
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS analytics_ledger_wallet_figures",
        ),
        migrations.RunSQL(
            sql=(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS analytics_ledger_created_brin"
                " ON wallet_ledgerentry USING brin (created_at)"
            ),
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS analytics_ledger_created_brin",
        ),
    ]
