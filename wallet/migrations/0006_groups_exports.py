"""Exports join the staff groups (README: "Support admin"): both groups see every export's
state; compliance may also export the whole audit log (``audit.export_log``)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ADDED = {
    "support": [("analytics", "view_export")],
    "compliance": [("analytics", "view_export"), ("audit", "export_log")],
}


def _permission(apps, app_label: str, codename: str):
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def permissions_add(apps, schema_editor):
    # As in 0005: permissions are normally made after the last migration; make them now.
    for app_label in ("analytics", "audit"):
        app_config = apps.get_app_config(app_label)
        if getattr(app_config, "models_module", None) is None:
            app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    for name, wanted in ADDED.items():
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.add(*(_permission(apps, *pair) for pair in wanted))


def permissions_remove(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name, wanted in ADDED.items():
        for group in Group.objects.filter(name=name):
            group.permissions.remove(*(_permission(apps, *pair) for pair in wanted))


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_export_audit_log"),
        ("audit", "0005_export_audit_log"),
        ("wallet", "0005_support_groups"),
    ]

    operations = [migrations.RunPython(permissions_add, permissions_remove)]
