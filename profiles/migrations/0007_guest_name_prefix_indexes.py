"""Indexes for the admin's guest search: the start of an email or name, any case.

Django's ``istartswith`` is ``UPPER(column::text) LIKE UPPER('term%')`` on PostgreSQL; an index
on the upper-cased column with ``text_pattern_ops`` serves it whatever the database's collation.
PostgreSQL only (SQLite has no operator classes), so they live here rather than in the model.
"""

from django.db import migrations

COLUMNS = ("email", "first_name", "last_name")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS guest_{column}_upper_prefix_idx "
            f"ON profiles_guest (UPPER({column}::text) text_pattern_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS guest_{column}_upper_prefix_idx")


class Migration(migrations.Migration):
    dependencies = [("profiles", "0006_segments")]

    operations = [migrations.RunPython(create, drop)]
