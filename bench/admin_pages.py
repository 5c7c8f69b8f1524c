"""Time the admin pages marketers use, on 10 million events, against the 300 ms target.

    make bench-admin                                   # 10M events (loads once, ~20 min)
    .venv/bin/python bench/admin_pages.py --quick      # 200k events, to prove it runs
    .venv/bin/python bench/admin_pages.py --database-url postgres://…/footprint_demo --no-load

Works on its own PostgreSQL database (``footprint_admin_bench``, or ``…_quick``; created and
filled once, ``--fresh`` rebuilds it). Guests, sessions, events, processed inbox requests and
flow executions of a live experience are loaded with ``COPY`` (loading is not what is
measured); then ``manage.py rollups_rebuild`` fills the rollups and the catalogue the pipeline
would have kept. Each page is loaded by a logged-in member of the Marketers group through
Django's test client: one cold load, then ``--loads`` more. Prints a table of the median,
the worst and the number of SQL queries.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE = "footprint_admin_bench"
TARGET_MS = 300
TRACK_NAMES = [
    "Order Completed",
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Checkout Started",
    "Search",
    "Signed Up",
    "Newsletter Subscribed",
    "Coupon Applied",
    "Wishlist Added",
]
PAGES = ["/", "/shoes", "/shoes/trail", "/cart", "/checkout", "/account", "/blog/running", "/sale"]
EXPERIENCES = [("hero_banner", ["control", "personal"]), ("checkout_copy", ["control", "short"])]
SOURCES = [("Web shop", "web"), ("Shop app", "ios"), ("Stores", "pos")]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k events, a few seconds each")
    parser.add_argument("--events", type=int, help="events to load (default 10,000,000)")
    parser.add_argument("--guests", type=int, help="guests to load (default events / 20)")
    parser.add_argument("--loads", type=int, default=5, help="timed loads of each page")
    parser.add_argument("--fresh", action="store_true", help="rebuild the database")
    parser.add_argument("--no-load", action="store_true", help="time pages on the data there is")
    parser.add_argument("--load-only", action="store_true", help="fill the database, time nothing")
    parser.add_argument("--database-url", help="a PostgreSQL database the benchmark may fill")
    args = parser.parse_args()
    args.events = args.events or (200_000 if args.quick else 10_000_000)
    args.guests = args.guests or max(1000, args.events // 40)
    name = DATABASE + ("_quick" if args.quick else "")
    args.database_url = args.database_url or f"postgres://postgres@127.0.0.1:5432/{name}"
    return args


def main() -> None:
    args = arguments()
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.local"
    os.environ.setdefault("DEBUG", "0")
    name = args.database_url.rsplit("/", 1)[1]
    pg = ["-h", "127.0.0.1", "-U", "postgres"]
    if not args.no_load:
        if args.fresh:
            subprocess.run(["dropdb", *pg, "--if-exists", "--force", name], check=True)
        subprocess.run(["createdb", *pg, name], capture_output=True, check=False)

    import django

    django.setup()
    from django.core.management import call_command

    if not args.no_load:
        call_command("migrate", verbosity=0)
        from tracking.models import Workspace

        if not Workspace.objects.filter(name="Bench").exists():
            load(args.guests, args.events)
    if not args.load_only:
        report(args)


# --- loading ----------------------------------------------------------------------------------


def copy_rows(cursor, table: str, columns: list[str], rows) -> int:
    raw = cursor.connection  # psycopg 3
    count = 0
    with raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def load(guests: int, events: int) -> None:
    from django.core.management import call_command
    from django.db import connection

    from experiences.models import Experience, FlowExecution, Metric, Variant
    from profiles.models import Guest, Segment, Session
    from profiles.segments import segment_recompute
    from tracking import services
    from tracking.models import InboxRequest

    rng = random.Random(7)
    now = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    workspace = services.workspace_create(name="Bench")
    services.workspace_create(name="Elsewhere")  # a workspace the marketer is not in
    sources = [
        services.source_create(workspace=workspace, name=name, kind=kind) for name, kind in SOURCES
    ]
    source_ids = [s.pk for s in sources]
    days = 90
    print(f"loading {guests:,} guests and {events:,} events over {days} days …", flush=True)

    def stamp(minutes_ago: int) -> str:
        return (now - timedelta(minutes=minutes_ago)).isoformat()

    with connection.cursor() as cursor:
        first_seen = [rng.randint(0, days * 24 * 60) for _ in range(guests)]
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
                    "customer" if i % 3 == 0 else "visitor",
                    stamp(first_seen[i]),
                    stamp(rng.randint(0, first_seen[i])),
                    f"guest{i}@example.com" if i % 3 == 0 else "",
                    "Ada" if i % 3 == 0 else "",
                    "Lovelace" if i % 3 == 0 else "",
                    f'{{"plan": "{("free", "plus", "pro")[i % 3]}", "age": {20 + i % 50}}}',
                    stamp(first_seen[i]),
                )
                for i in range(guests)
            ),
        )
        cursor.execute(
            f"SELECT min(id), max(id) FROM {Guest._meta.db_table} WHERE workspace_id = %s",  # noqa: S608
            [workspace.pk],
        )
        low, high = cursor.fetchone()
        sessions = events // 20
        copy_rows(
            cursor,
            Session._meta.db_table,
            [
                "ref",
                "workspace_id",
                "guest_id",
                "channel",
                "client_session_id",
                "device",
                "status",
                "started_at",
                "ended_at",
                "duration",
                "force_closed",
                "event_count",
                "page_view_count",
                "first_page",
                "last_page",
            ],
            (
                (
                    str(uuid.uuid4()),
                    workspace.pk,
                    rng.randint(low, high),
                    ("browser", "app", "store")[i % 3],
                    "",
                    "",
                    "CLOSED",
                    stamp(m + 20),
                    stamp(m),
                    "00:20:00",
                    "f",
                    8,
                    3,
                    "https://shop.example/",
                    "https://shop.example/cart",
                )
                for i, m in ((i, rng.randint(0, days * 24 * 60)) for i in range(sessions))
            ),
        )
        print(f"  guests and {sessions:,} sessions in {time.perf_counter() - started:.0f} s")
        loaded = copy_events(
            cursor, event_lines(rng, workspace.pk, source_ids, low, high, events, now, days)
        )
        print(f"  {loaded:,} events in {time.perf_counter() - started:.0f} s", flush=True)
        copy_rows(
            cursor,
            InboxRequest._meta.db_table,
            [
                "source_id",
                "door",
                "body",
                "meta",
                "received_at",
                "status",
                "processed_at",
                "attempts",
                "error",
            ],
            (
                (
                    source_ids[i % 3],
                    "segment",
                    b"",
                    "{}",
                    stamp(i),
                    "done",
                    (now - timedelta(minutes=i) + timedelta(seconds=2)).isoformat(),
                    1,
                    "",
                )
                for i in range(20_000)
            ),
        )
        experiences = []
        for friendly_id, names in EXPERIENCES:
            experience = Experience.objects.create(
                workspace=workspace,
                friendly_id=friendly_id,
                name=friendly_id.replace("_", " ").capitalize(),
                status=Experience.Status.LIVE,
            )
            Metric.objects.create(experience=experience, event="Order Completed")
            variants = [
                Variant.objects.create(
                    experience=experience, name=n, weight=50, is_control=(n == "control")
                )
                for n in names
            ]
            experiences.append((experience, variants))
        copy_rows(
            cursor,
            FlowExecution._meta.db_table,
            [
                "ref",
                "experience_id",
                "variant_id",
                "guest_id",
                "browser_ref",
                "occurred_at",
                "execution_time_ms",
                "status",
            ],
            (
                (
                    str(uuid.uuid4()),
                    experience.pk,
                    variants[i % 2].pk,
                    rng.randint(low, high),
                    "",
                    stamp(rng.randint(0, 30 * 24 * 60)),
                    5,
                    "SUCCESS",
                )
                for experience, variants in experiences
                for i in range(10_000)
            ),
        )
        for table in ("tracking_event", "profiles_guest", "profiles_session"):
            cursor.execute(f"ANALYZE {table}")
    print(f"loaded in {time.perf_counter() - started:.0f} s; rebuilding rollups …", flush=True)
    rebuilt = time.perf_counter()
    call_command("rollups_rebuild", workspace=["Bench"])
    print(f"rollups and catalogue rebuilt in {time.perf_counter() - rebuilt:.0f} s", flush=True)
    for slug, rule in [
        ("pro", {"trait": {"key": "plan", "op": "eq", "value": "pro"}}),
        ("customers", {"field": {"name": "guest_type", "op": "eq", "value": "customer"}}),
    ]:
        segment = Segment.objects.create(workspace=workspace, slug=slug, name=slug, rule=rule)
        segment_recompute(segment)
    print(f"ready in {time.perf_counter() - started:.0f} s", flush=True)


EVENT_COLUMNS = [
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
]


def copy_events(cursor, lines) -> int:
    """COPY the events in PostgreSQL's text format, 20,000 lines a write, with the table's
    secondary indexes dropped first and built again after (faster than keeping them)."""
    from django.db import connection

    from tracking.models import Event

    indexes = Event._meta.indexes
    with connection.schema_editor() as editor:
        for index in indexes:
            editor.remove_index(Event, index)
    raw = cursor.connection
    count = 0
    # The rows point at guests and sources made above: checking each foreign key (queued to
    # the end of the COPY) would take longer than the COPY itself.
    cursor.execute("SET session_replication_role = replica")
    with raw.cursor().copy(
        f"COPY {Event._meta.db_table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
    ) as copy:
        chunk = []
        for line in lines:
            chunk.append(line)
            if len(chunk) == 20_000:
                copy.write("".join(chunk))
                count += len(chunk)
                chunk = []
        if chunk:
            copy.write("".join(chunk))
            count += len(chunk)
    cursor.execute("SET session_replication_role = DEFAULT")
    print(f"  {count:,} events copied; building the indexes …", flush=True)
    with connection.schema_editor() as editor:
        for index in indexes:
            editor.add_index(Event, index)
    return count


def event_lines(rng, workspace_id, source_ids, low, high, events, now, days):
    """One text-format COPY line per event: a tenth of them TRACKING events of two live
    experiences, a third page views, half track calls of ten names, a few identify calls."""
    span = days * 24 * 60 * 60
    # Times are drawn from a pool of formatted moments: formatting each one costs more than
    # writing it.
    moments = [(now - timedelta(seconds=rng.randrange(span))).isoformat() for _ in range(200_003)]
    page_props = [f'{{"url": "https://shop.example{p}", "path": "{p}"}}' for p in PAGES]
    guests = high - low + 1
    channels = ("browser", "app", "store")
    for index in range(events):
        roll = index % 20
        revenue, currency = "\\N", ""
        if roll < 10:
            name = TRACK_NAMES[(index * 7 + index // 20) % len(TRACK_NAMES)]
            kind = "track"
            properties = f'{{"sku": "SKU-{index % 499}", "price": {index % 295 + 5}}}'
            if name == "Order Completed":
                revenue, currency = f"{index % 290 + 10}.00", "EUR"
        elif roll < 17:
            page = (index // 20) % len(PAGES)
            kind, name, properties = "page", PAGES[page], page_props[page]
        elif roll < 18:
            kind, name, properties = "identify", "", "{}"
        else:
            friendly_id, variants = EXPERIENCES[roll % 2]
            kind, name = "TRACKING", friendly_id
            properties = f'{{"variant": "{variants[(index // 20) % 2]}"}}'
        moment = moments[index % 200_003]
        door = "personalize" if kind == "TRACKING" else "segment"
        traits = '{"plan": "pro"}' if kind == "identify" else "{}"
        guest = low + (index * 2654435761) % guests
        yield (
            f"{workspace_id}\t{source_ids[index % 3]}\t{guest}\t{door}\t{kind}\t{name}\t"
            f"m{index}\t\ta{index % 100000}\t\t\t{properties}\t{{}}\t{traits}\t{moment}\t"
            f"{moment}\tf\t{channels[index % 3]}\t{revenue}\t{currency}\n"
        )


# --- timing -----------------------------------------------------------------------------------


def report(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from experiences.models import Experience
    from profiles.models import Guest, Segment
    from tracking.models import Event, Source, Workspace

    settings.ALLOWED_HOSTS = ["*"]
    users = get_user_model()
    marketer, _ = users.objects.get_or_create(
        username="bench-marketer", defaults={"is_staff": True}
    )
    marketer.groups.add(Group.objects.get(name="Marketers"))
    workspace = Workspace.objects.filter(name="Bench").first() or Workspace.objects.first()
    workspace.members.add(marketer)
    in_workspace = Event.objects.filter(workspace=workspace)
    event = in_workspace.filter(type="track").order_by("-timestamp").values_list("pk", flat=True)[0]
    tracking = (
        in_workspace.filter(type="TRACKING")
        .order_by("-timestamp")
        .values_list("pk", flat=True)
        .first()
    )
    guest = (
        Guest.objects.filter(workspace=workspace, merged_into=None)
        .order_by("-last_seen")
        .values_list("pk", flat=True)[0]
    )
    email = (
        Guest.objects.filter(workspace=workspace)
        .exclude(email="")
        .values_list("email", flat=True)[0]
    )
    source = Source.objects.filter(workspace=workspace).values_list("pk", flat=True)[0]
    segment = (
        Segment.objects.filter(workspace=workspace)
        .order_by("-member_count")
        .values_list("pk", flat=True)
        .first()
    )
    experience = Experience.objects.filter(workspace=workspace).values_list("pk", flat=True).first()
    pages = [
        ("dashboard (7 days, by source)", "/admin/"),
        ("dashboard (30 days, by type)", "/admin/?period=30d&split=type"),
        ("events list", "/admin/tracking/event/"),
        ("events: name = Order Completed", "/admin/tracking/event/?name=Order+Completed"),
        ("events: name, last 7 days", "/admin/tracking/event/?name=Search&within=7d"),
        (
            "events: experience + variant",
            "/admin/tracking/event/?experience=hero_banner&variant=personal",
        ),
        ("events: a guest's identifier", f"/admin/tracking/event/?q={email}"),
        ("event detail (track)", f"/admin/tracking/event/{event}/change/"),
        ("event detail (TRACKING)", f"/admin/tracking/event/{tracking}/change/"),
        ("sessions list", "/admin/profiles/session/"),
        ("guests list", "/admin/profiles/guest/"),
        ("guests: search by email", f"/admin/profiles/guest/?q={email[:10]}"),
        ("guest profile", f"/admin/profiles/guest/{guest}/change/"),
        ("source page (debugger)", f"/admin/tracking/source/{source}/change/"),
        ("segments list", "/admin/profiles/segment/"),
    ]
    if segment:
        pages.append(("segment page", f"/admin/profiles/segment/{segment}/change/"))
    if experience:
        pages.append(("experience page", f"/admin/experiences/experience/{experience}/change/"))
    marketer_client = Client()
    marketer_client.force_login(marketer)
    admin_client = Client()
    admin, _ = users.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    admin_client.force_login(admin)
    total = Event.objects.count() if args.quick else None
    estimate = _estimate_rows("tracking_event")
    print(
        f"\nevents in the table: {total or estimate:,}{'' if total else ' (planner estimate)'}  "
        f"guests: {Guest.objects.count():,}  loads per page: 1 cold + {args.loads}"
    )
    head = f"{'page':38} {'as':9} {'cold ms':>8} {'median ms':>10} {'worst ms':>9}"
    print(f"{head} {'queries':>8}  target")
    print(f"{'-' * 38} {'-' * 9} {'-' * 8} {'-' * 10} {'-' * 9} {'-' * 8}  {'-' * 10}")
    missed = []
    for name, url in pages:
        # Marketers do not see sources: the source page is timed as an admin sees it.
        who, client = (
            ("admin", admin_client) if "/source/" in url else ("marketer", marketer_client)
        )
        times = []
        status = None
        for _ in range(args.loads + 1):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
            status = response.status_code
        if status != 200:
            print(f"{name:38} {who:9} HTTP {status}: skipped")
            continue
        cold, warm = times[0], times[1:]
        middle = statistics.median(warm)
        verdict = "met" if middle < TARGET_MS else "NOT MET"
        if middle >= TARGET_MS:
            missed.append(name)
        print(
            f"{name:38} {who:9} {cold:8.0f} {middle:10.0f} {max(warm):9.0f} {len(captured):8d}  "
            f"< {TARGET_MS} ms {verdict}"
        )
    print("\nevery page met the target" if not missed else f"\nover target: {', '.join(missed)}")


def _estimate_rows(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
