# Daily figures and counterparty figures (analytics.DailyFigure, analytics.CounterpartyFigure),
# kept by triggers on the ledger.
#
# The triggers are statement-level with transition tables: one INSERT of two ledger lines (a
# transfer) runs one upsert per figure table, in the same transaction, under the wallet locks
# the movement already holds, so they add no lock of their own to the money path. Rows are
# upserted in key order, so two statements touching the same figures wait for each other
# instead of deadlocking. Lines are only ever inserted by the application; updates and deletes
# are followed too (a test that backdates its lines, a repair by hand), so nothing can leave
# the figures behind.
#
# Days and months are those of settings.QUICKPE_BUSINESS_TIME_ZONE (Asia/Kolkata, a constant of
# the product, not a deployment setting). Changing that zone needs a migration that rebuilds
# the figures; tests/invariants.py recomputes them from the ledger in the setting's zone, so a
# mismatch fails the suite.
#
# Order matters on a live system: the triggers are created first, which locks the ledger
# against inserts until this migration commits, then the existing lines are summed. No line can
# fall between the backfill's snapshot and the triggers.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

ZONE = "Asia/Kolkata"

# (table, its key columns as computed from ledger lines, which lines count)
FIGURES = [
    (
        "analytics_dailyfigure",
        {
            "wallet_id": "wallet_id",
            "day": f"(created_at AT TIME ZONE '{ZONE}')::date",
            "kind": "kind",
            "direction": "direction",
            "category": "category",
        },
        "true",
    ),
    (
        "analytics_counterpartyfigure",
        {
            "wallet_id": "wallet_id",
            "month": f"date_trunc('month', created_at AT TIME ZONE '{ZONE}')::date",
            "counterparty_id": "counterparty_id",
        },
        "kind IN ('transfer_in', 'transfer_out') AND counterparty_id IS NOT NULL",
    ),
]


def sums(key: dict, which: str, lines: str) -> str:
    """The lines of the relation ``lines`` summed per figure, in key order."""
    columns = ", ".join(
        name if expression == name else f"{expression} AS {name}"
        for name, expression in key.items()
    )
    group = ", ".join(key)
    return f"""
        SELECT {columns}, SUM(amount) AS amount, COUNT(*) AS lines
        FROM {lines} WHERE {which}
        GROUP BY {group} ORDER BY {group}
    """  # noqa: S608 - built from the constants above


def follow(table: str, key: dict, which: str) -> str:
    group = ", ".join(key)
    same = " AND ".join(f"figure.{name} = changed.{name}" for name in key)
    return f"""
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        WITH changed AS ({sums(key, which, "removed")})
        DELETE FROM {table} AS figure USING changed
        WHERE {same} AND figure.lines = changed.lines;
        WITH changed AS ({sums(key, which, "removed")})
        UPDATE {table} AS figure
        SET amount = figure.amount - changed.amount, lines = figure.lines - changed.lines
        FROM changed WHERE {same};
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO {table} AS figure ({group}, amount, lines)
        {sums(key, which, "added")}
        ON CONFLICT ({group}) DO UPDATE
        SET amount = figure.amount + EXCLUDED.amount, lines = figure.lines + EXCLUDED.lines;
    END IF;
"""  # noqa: S608 - built from the constants above


FOLLOW = f"""
CREATE FUNCTION analytics_figures_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    {"".join(follow(*figures) for figures in FIGURES)}
    RETURN NULL;
END
$$;
CREATE TRIGGER analytics_figures_insert AFTER INSERT ON wallet_ledgerentry
REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION analytics_figures_follow();
CREATE TRIGGER analytics_figures_update AFTER UPDATE ON wallet_ledgerentry
REFERENCING OLD TABLE AS removed NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION analytics_figures_follow();
CREATE TRIGGER analytics_figures_delete AFTER DELETE ON wallet_ledgerentry
REFERENCING OLD TABLE AS removed
FOR EACH STATEMENT EXECUTE FUNCTION analytics_figures_follow();
{
    "".join(
        f"INSERT INTO {table} ({', '.join(key)}, amount, lines)"
        f" {sums(key, which, 'wallet_ledgerentry')};"
        for table, key, which in FIGURES
    )
}
"""

UNFOLLOW = """
DROP TRIGGER analytics_figures_insert ON wallet_ledgerentry;
DROP TRIGGER analytics_figures_update ON wallet_ledgerentry;
DROP TRIGGER analytics_figures_delete ON wallet_ledgerentry;
DROP FUNCTION analytics_figures_follow();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0003_export_audit_log'),
        ('wallet', '0006_groups_exports'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CounterpartyFigure',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('month', models.DateField(help_text='The first day of the business month.')),
                ('amount', models.BigIntegerField()),
                ('lines', models.IntegerField()),
                ('counterparty', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('wallet', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='wallet.wallet')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('wallet', 'month', 'counterparty'), name='analytics_counterpartyfigure_one_per_group'), models.CheckConstraint(condition=models.Q(('amount__gt', 0), ('lines__gt', 0)), name='analytics_counterpartyfigure_positive')],
            },
        ),
        migrations.CreateModel(
            name='DailyFigure',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('kind', models.CharField(choices=[('deposit', 'Deposit'), ('withdrawal', 'Withdrawal'), ('transfer_in', 'Transfer In'), ('transfer_out', 'Transfer Out'), ('reversal', 'Reversal')], max_length=20)),
                ('direction', models.CharField(choices=[('credit', 'Credit'), ('debit', 'Debit')], max_length=6)),
                ('category', models.CharField(choices=[('transfer', 'Transfer'), ('food', 'Food'), ('transport', 'Transport'), ('shopping', 'Shopping'), ('bills', 'Bills'), ('entertainment', 'Entertainment'), ('health', 'Health'), ('other', 'Other')], max_length=20)),
                ('amount', models.BigIntegerField()),
                ('lines', models.IntegerField()),
                ('wallet', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='wallet.wallet')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('wallet', 'day', 'kind', 'direction', 'category'), name='analytics_dailyfigure_one_per_group'), models.CheckConstraint(condition=models.Q(('amount__gt', 0), ('lines__gt', 0)), name='analytics_dailyfigure_positive')],
            },
        ),
        migrations.RunSQL(sql=FOLLOW, reverse_sql=UNFOLLOW),
    ]
