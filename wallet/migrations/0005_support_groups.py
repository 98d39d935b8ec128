"""The staff groups of the admin, with least privilege (README: "Support admin").

support: sees everything support needs, freezes and unfreezes wallets, sends password resets.
compliance: sees the same, verifies the audit chain (exports of the audit log come later:
add their permission here, in a new migration, when they exist).
Deactivating users, reversing transfers and editing accounts belong to no group: superusers
only, unless a superuser grants the permission to one person on purpose.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_EVERYTHING = [
    ("wallet", "view_user"),
    ("wallet", "view_wallet"),
    ("wallet", "view_ledgerentry"),
    ("wallet", "view_transfer"),
    ("wallet", "view_moneyrequest"),
    ("wallet", "view_devicesession"),
    ("wallet", "view_idempotencykey"),
    ("notifications", "view_notification"),
    ("audit", "view_auditentry"),
]

GROUPS = {
    "support": [
        *VIEW_EVERYTHING,
        ("wallet", "freeze_wallet"),
        ("wallet", "send_password_reset"),
    ],
    "compliance": [
        *VIEW_EVERYTHING,
        ("audit", "verify_chain"),
    ],
}


def groups_sync(apps, schema_editor=None):
    """Create the groups with exactly these permissions (again, if a test flushed them)."""
    # Permissions are normally created after the last migration (post_migrate); make them now
    # so a fresh database gets its groups in the same run.
    for app_label in ("wallet", "notifications", "audit"):
        app_config = apps.get_app_config(app_label)
        if getattr(app_config, "models_module", None) is None:  # a migration state has none
            app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in GROUPS.items():
        permissions = [
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
            for app_label, codename in wanted
        ]
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.set(permissions)


def groups_remove(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=GROUPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audit", "0004_auditentry_verify_chain_permission"),
        ("notifications", "0001_initial"),
        ("wallet", "0004_support_admin"),
    ]

    operations = [migrations.RunPython(groups_sync, groups_remove)]
