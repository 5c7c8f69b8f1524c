from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("tracking", "0010_failed_event_import_line"),
        ("tracking", "0010_rollups_catalogue"),
    ]

    operations = []
