"""The events table's monthly partitions (PostgreSQL; SQLite keeps one plain table).

Why a month: retention is counted in days and usually runs from one month to a few years, so a
month is the unit it can drop whole; a query over the last 7 days or 30 days touches one or two
partitions; and a few dozen partitions over years keep planning cheap, where days would make
thousands. ``config.lib.partitions`` holds the statements.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.utils import timezone

from config.lib import partitions
from config.lib.partitions import month_add, month_start

from .models import Event, Workspace

logger = logging.getLogger(__name__)

TABLE = Event._meta.db_table
COLUMN = "timestamp"
# Months made ahead of time, after the current one (beat's daily task keeps them there).
MONTHS_AHEAD = 3
# Months older than this stay in the default partition when an installation is migrated:
# outliers (a device whose clock said 1970) rather than history worth a partition each.
OLDEST_MONTHS = 10 * 12


def events_partitioned() -> bool:
    return partitions.is_partitioned(TABLE)


def months_ahead(*, now: datetime | None = None) -> list[str]:
    """Make the partitions of this month and the next ``MONTHS_AHEAD``; the ones made.

    A month the default partition still holds rows of (an installation whose events are not
    moved yet) is left to ``manage.py events_partition``, which moves them.
    """
    if not events_partitioned():
        return []
    start = month_start(now or timezone.now())
    made = []
    existing = {p.name for p in partitions.partitions(TABLE)}
    for offset in range(MONTHS_AHEAD + 1):
        month = month_add(start, offset)
        name = partitions.partition_name(TABLE, month)
        if name in existing:
            continue
        if partitions.default_count(TABLE, COLUMN, month):
            logger.warning("%s not made: run manage.py events_partition", name)
            continue
        partitions.month_ensure(TABLE, COLUMN, month)
        made.append(name)
    return made


def months_to_move(*, now: datetime | None = None) -> list[datetime]:
    """The months the default partition holds rows of, within the window that gets partitions."""
    start = month_start(now or timezone.now())
    return partitions.default_months(
        TABLE,
        COLUMN,
        after=month_add(start, -OLDEST_MONTHS),
        before=month_add(start, MONTHS_AHEAD + 1),
    )


def month_move(month: datetime) -> int:
    """Make ``month``'s partition, moving its rows out of the default partition (one
    transaction); the rows moved."""
    return partitions.month_ensure(TABLE, COLUMN, month)


def retention_cutoff(*, now: datetime) -> datetime | None:
    """Before this moment every workspace's retention has passed (None: some workspace keeps
    its events forever, or there is none)."""
    days = list(Workspace.objects.values_list("retention_days", flat=True))
    if not days or any(d is None for d in days):
        return None
    return now - timedelta(days=max(days))


def months_expired_drop(*, now: datetime) -> tuple[list[str], int]:
    """Drop the months every workspace's retention has passed; their names and row count."""
    if not events_partitioned():
        return [], 0
    cutoff = retention_cutoff(now=now)
    if cutoff is None:
        return [], 0
    dropped, rows = partitions.months_drop(TABLE, before=cutoff)
    if dropped:
        logger.info("retention dropped %s (%s events)", ", ".join(dropped), rows)
    return dropped, rows
