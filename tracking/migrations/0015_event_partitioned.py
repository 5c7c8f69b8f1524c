"""Events partitioned by month of their timestamp (PostgreSQL; SQLite keeps a plain table).

The table becomes partitioned without copying a row: the existing table becomes the default
partition (``tracking_event_default``), keeping its indexes, and gets the primary key
``(id, workspace_id, timestamp)`` (PostgreSQL requires the partition column in it; Django keeps
knowing events by ``id``, which the sequence keeps unique). Months after the newest event get
their partitions now; an installation with events moves them into their months afterwards with
``manage.py events_partition`` (resumable), while everything keeps working.
"""

from datetime import UTC, datetime

from django.db import migrations

from config.lib import partitions

TABLE = "tracking_event"
MONTHS_AHEAD = 3


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT max(timestamp) FROM {TABLE}")
        (newest,) = cursor.fetchone()
    partitions.table_partition(TABLE, "timestamp", ["id", "workspace_id", "timestamp"])
    now = partitions.month_start(datetime.now(UTC))
    first = partitions.month_add(now, -1)
    if newest is not None:
        first = max(first, partitions.month_add(partitions.month_start(newest), 1))
    month = first
    while month <= partitions.month_add(now, MONTHS_AHEAD):
        partitions.month_ensure(TABLE, "timestamp", month)
        month = partitions.month_add(month, 1)


class Migration(migrations.Migration):
    dependencies = [("tracking", "0014_failedevent_inbox_no_constraint")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False)]
