"""Segment recompute and CSV export at scale, against the SPEC 10 targets.

    make bench-segments            # 100k guests, 2M events (loads in a few minutes once)
    .venv/bin/python bench/segments.py --guests 5000 --events 100000   # quick

Works on its own PostgreSQL database (``footprint_bench``, created and filled once; pass
``--fresh`` to rebuild it). The data is loaded with COPY (loading is not what is measured), then
the script times:

- a full recompute of a 3-condition segment (a trait, an event count in a window and a revenue
  sum), first when every member enters and again when nothing changed;
- an incremental run for 1,000 guests;
- a CSV export of a 100k-member segment, streamed as the API streams it.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "footprint_bench"
NAMES = ["Order Completed", "Product Viewed", "Signed Up", "Cart Viewed", "Search"]
PLANS = ["free", "plus", "pro"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--fresh", action="store_true", help="rebuild the database")
    parser.add_argument(
        "--database-url",
        default=f"postgres://postgres@127.0.0.1:5432/{DATABASE}",
        help="a PostgreSQL database the benchmark may fill",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("DEBUG", "0")
    name = args.database_url.rsplit("/", 1)[1]
    if args.fresh:
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name])
    subprocess.run(
        ["createdb", "-h", "127.0.0.1", "-U", "postgres", name], capture_output=True, check=False
    )

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from tracking.models import Workspace

    workspace = Workspace.objects.filter(name="Bench").first()
    if workspace is None:
        workspace = load(args.guests, args.events)
    report(workspace, args)


def load(guests: int, events: int):
    from django.db import connection

    from profiles.models import Guest
    from tracking import services
    from tracking.models import Event

    workspace = services.workspace_create(name="Bench")
    source = services.source_create(workspace=workspace, name="Bench source")
    rng = random.Random(1)
    now = datetime.now(UTC)
    started = time.perf_counter()
    print(f"loading {guests:,} guests and {events:,} events …", flush=True)
    with connection.cursor() as cursor:
        copy_rows(
            cursor,
            Guest._meta.db_table,
            [
                "ref",
                "workspace_id",
                "guest_type",
                "first_seen",
                "last_seen",
                "email",
                "first_name",
                "last_name",
                "traits",
                "created_at",
            ],
            (
                (
                    str(uuid.uuid4()),
                    workspace.pk,
                    "customer" if i % 3 else "visitor",
                    (now - timedelta(days=90)).isoformat(),
                    (now - timedelta(days=rng.randint(0, 60))).isoformat(),
                    f"guest{i}@example.com",
                    "Ada",
                    "Lovelace",
                    f'{{"plan": "{PLANS[i % 3]}", "age": {20 + i % 50}}}',
                    now.isoformat(),
                )
                for i in range(guests)
            ),
        )
        cursor.execute(
            f"SELECT min(id), max(id) FROM {Guest._meta.db_table} WHERE workspace_id = %s",  # noqa: S608
            [workspace.pk],
        )
        low, high = cursor.fetchone()
        copy_rows(
            cursor,
            Event._meta.db_table,
            [
                "workspace_id",
                "source_id",
                "guest_id",
                "door",
                "type",
                "name",
                "message_id",
                "user_id",
                "anonymous_id",
                "group_id",
                "previous_id",
                "properties",
                "context",
                "traits",
                "timestamp",
                "received_at",
                "timestamp_clamped",
                "channel",
                "revenue",
                "currency",
            ],
            (event_row(rng, workspace.pk, source.pk, low, high, i, now) for i in range(events)),
        )
        cursor.execute(f"ANALYZE {Guest._meta.db_table}")
        cursor.execute(f"ANALYZE {Event._meta.db_table}")
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)
    return workspace


def event_row(rng, workspace_id, source_id, low, high, index, now):
    name = NAMES[rng.randrange(len(NAMES))]
    revenue = f"{rng.randint(5, 300)}.00" if name == "Order Completed" else None
    stamp = (now - timedelta(minutes=rng.randint(0, 60 * 24 * 90))).isoformat()
    return (
        workspace_id,
        source_id,
        rng.randint(low, high),
        "segment",
        "track",
        name,
        f"m{index}",
        "",
        "",
        "",
        "",
        "{}",
        "{}",
        "{}",
        stamp,
        stamp,
        "f",
        "browser",
        revenue,
        "EUR" if revenue else "",
    )


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    raw = cursor.connection  # psycopg 3
    with raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def report(workspace, args) -> None:
    from django.db import connection

    from profiles.exports import export_csv
    from profiles.models import Guest, Segment, SegmentMembership
    from profiles.segments import segment_recompute
    from tracking.models import Event

    guests = Guest.objects.filter(workspace=workspace).count()
    events = Event.objects.filter(workspace=workspace).count()
    rule = {
        "all": [
            {"trait": {"key": "plan", "op": "in", "value": ["plus", "pro"]}},
            {
                "event": {
                    "name": "Product Viewed",
                    "count": {"op": "gte", "value": 2},
                    "within_days": 60,
                }
            },
            {"revenue": {"op": "gte", "value": 100, "within_days": 90}},
        ]
    }
    three, _ = Segment.objects.update_or_create(
        workspace=workspace,
        slug="three-conditions",
        defaults={"name": "3 conditions", "rule": rule},
    )
    everyone, _ = Segment.objects.update_or_create(
        workspace=workspace,
        slug="everyone",
        defaults={
            "name": "Everyone",
            "rule": {"field": {"name": "first_seen", "op": "lte", "value": {"days_ago": 0}}},
        },
    )
    SegmentMembership.objects.filter(segment__in=[three, everyone]).delete()

    rows = []

    def timed(label, target, call):
        started = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - started
        rows.append((label, seconds, target, result))

    timed("3-condition recompute, all enter", 5.0, lambda: run_text(segment_recompute(three)))
    timed("3-condition recompute, no change", 5.0, lambda: run_text(segment_recompute(three)))
    sample = list(Guest.objects.filter(workspace=workspace).values_list("pk", flat=True)[:1000])
    timed(
        "incremental run, 1,000 guests",
        None,
        lambda: run_text(segment_recompute(three, guest_ids=sample)),
    )
    segment_recompute(everyone)
    members = everyone.memberships.filter(exited_at__isnull=True).count()

    def export():
        size = 0
        for line in export_csv(everyone, traits=["plan", "age"]):
            size += len(line.encode())
        return f"{members:,} rows, {size / 1e6:.1f} MB"

    timed(f"CSV export of {members:,} members", 2.0, export)

    print()
    print(f"PostgreSQL {connection.pg_version // 10000}, {guests:,} guests, {events:,} events")
    print(f"{'measure':40} {'seconds':>8} {'target':>8}  result")
    for label, seconds, target, result in rows:
        goal = f"≤ {target:.0f}" if target else "-"
        print(f"{label:40} {seconds:8.2f} {goal:>8}  {result}")


def run_text(run) -> str:
    return f"{run.entered:,} entered, {run.exited:,} left" + (" (stale)" if run.stale else "")


if __name__ == "__main__":
    main()
