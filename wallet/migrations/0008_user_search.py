# The admin's search by the start of a name or an email (wallet.models.UserManager.matching):
# a B-tree range per expression instead of a scan of every account. The expressions are in the
# "C" collation because a LIKE 'PRIYA%' uses a B-tree only when it sorts bytewise.
#
# CONCURRENTLY so that building them on a large users table does not block sign-ups; that
# cannot run inside a transaction, hence atomic = False.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.models.functions import Collate, Concat, Upper


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
                Collate(Upper(Concat("first_name", models.Value(" "), "last_name")), "C"),
                name="wallet_user_full_name_upper",
            ),
        ),
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(
                Collate(Upper("last_name"), "C"), name="wallet_user_last_name_upper"
            ),
        ),
        AddIndexConcurrently(
            model_name="user",
            index=models.Index(Collate(Upper("email"), "C"), name="wallet_user_email_upper"),
        ),
    ]
