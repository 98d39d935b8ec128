"""Create every chain head up front, so a chain removed together with its head row is
noticed by verification (which requires all of them) instead of looking like it never was."""

from django.db import migrations

MAX_CHAINS = 1024
GENESIS_HASH = "0" * 64


def seed(apps, schema_editor):
    head = apps.get_model("audit", "AuditChainHead")
    head.objects.bulk_create(
        [head(chain=chain, last_seq=None, last_hash=GENESIS_HASH) for chain in range(MAX_CHAINS)],
        ignore_conflicts=True,
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
