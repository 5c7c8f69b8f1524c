"""Primary keys that include workspace_id (PostgreSQL), so the tables can be distributed by it.

Django keeps ``id`` as each model's identity; only the constraint PostgreSQL enforces becomes
``(id, workspace_id)``, with ``id`` first so a lookup by id still uses it. Nothing references
these tables by foreign key. SQLite keeps its plain keys.
"""

from django.db import migrations

TABLES = [
    "profiles_identity",
    "profiles_guestmerge",
    "profiles_suppressedidentity",
    "profiles_guestday",
    "profiles_guestrollup",
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
    dependencies = [("profiles", "0010_ref_unique_with_workspace")]

    operations = [
        migrations.RunPython(primary_keys("id, workspace_id"), primary_keys("id")),
    ]
