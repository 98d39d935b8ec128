# The admin's search by the start of a name or an email (wallet.models.UserManager.matching):
# a B-tree range per expression instead of a scan of every account. text_pattern_ops because a
# LIKE 'PRIYA%' uses a B-tree only with it, unless the database's collation is plain "C".
#
# CONCURRENTLY so that building them on a large users table does not block sign-ups; that
# cannot run inside a transaction, hence atomic = False.

import django.contrib.postgres.indexes
import django.db.models.functions.text
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("wallet", "0007_email_verification"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper(
                        django.db.models.functions.text.Concat(
                            "first_name", models.Value(" "), "last_name"
                        )
                    ),
                    name="text_pattern_ops",
                ),
                name="wallet_user_full_name_upper",
            ),
        ),
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("last_name"), name="text_pattern_ops"
                ),
                name="wallet_user_last_name_upper",
            ),
        ),
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(
                django.contrib.postgres.indexes.OpClass(
                    django.db.models.functions.text.Upper("email"), name="text_pattern_ops"
                ),
                name="wallet_user_email_upper",
            ),
        ),
    ]
