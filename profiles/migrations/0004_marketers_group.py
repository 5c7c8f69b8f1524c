"""The Marketers group: read-only access to guests, their sessions and events."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

MARKETERS = "Marketers"
READABLE = {
    "profiles": ["guest", "identity", "session", "guestmerge"],
    "tracking": ["event"],
}


def marketers_create(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=MARKETERS)
    for app_label, models in READABLE.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label,
                codename__in=[f"view_{model}" for model in models],
            )
        )


def marketers_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=MARKETERS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("profiles", "0003_sessions_merges_erasure"),
        ("tracking", "0003_event_ts_idx"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(marketers_create, marketers_delete)]
