"""Primary keys that include workspace_id (PostgreSQL), so the tables can be distributed by it.

Django keeps ``id`` as each model's identity (it stays unique: the sequence gives it); only the
constraint PostgreSQL enforces becomes ``(id, workspace_id)``, with ``id`` first so a lookup by
id still uses it. Nothing references these tables by foreign key. SQLite keeps its plain keys.
"""

from django.db import migrations

TABLES = [
    "tracking_dedupkey",
    "tracking_failedevent",
    "tracking_event",
    "tracking_workspace_members",
    "tracking_eventrollup",
    "tracking_failedeventrollup",
    "tracking_catalogueevent",
    "tracking_cataloguekey",
    "tracking_eventtyperollup",
]


def primary_keys(columns):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for table in TABLES:
            schema_editor.execute(
                f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, "
                f"ADD CONSTRAINT {table}_pkey PRIMARY KEY ({columns})"
            )

    return run


class Migration(migrations.Migration):
    dependencies = [("tracking", "0012_event_type_rollup")]

    operations = [
        migrations.RunPython(primary_keys("id, workspace_id"), primary_keys("id")),
    ]
