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
import json
import math
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
    parser.add_argument("--loads", type=int, default=9, help="timed loads of each page")
    parser.add_argument("--fresh", action="store_true", help="rebuild the database")
    parser.add_argument("--no-load", action="store_true", help="time pages on the data there is")
    parser.add_argument("--load-only", action="store_true", help="fill the database, time nothing")
    parser.add_argument(
        "--only", nargs="*", help="time only the pages whose name holds one of these words"
    )
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
    extras_ensure(workspace)
    # As autovacuum would have by the time anyone looks: statistics of every table, and the
    # visibility map that lets index-only scans skip the heap.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
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


# --- extras -----------------------------------------------------------------------------------

HEAVY_EMAIL = "heavy.buyer@example.com"
HEAVY_EVENTS = 20_000
FAILED_EVENTS = 50_000


def extras_ensure(workspace) -> None:
    """What a page needs that the main load does not make, added once to any bench database:
    a guest with many events (the profile, the identifier search) and refused messages (the
    failed events list)."""
    from django.db import connection

    from profiles.models import Guest, Identity
    from tracking.models import Event, FailedEvent, Source

    rng = random.Random(11)
    now = datetime.now(UTC).replace(microsecond=0)
    source_ids = list(Source.objects.filter(workspace=workspace).values_list("pk", flat=True))
    added = False
    with connection.cursor() as cursor:
        if not Guest.objects.filter(workspace=workspace, email=HEAVY_EMAIL).exists():
            heavy = Guest.objects.create(
                workspace=workspace,
                guest_type="customer",
                email=HEAVY_EMAIL,
                first_name="Hettie",
                last_name="Heavy",
                traits={"plan": "pro", "age": 41},
                first_seen=now - timedelta(days=89),
                last_seen=now,
            )
            Identity.objects.create(
                workspace=workspace, guest=heavy, kind="user_id", value="heavy-buyer"
            )
            cursor.execute("SET session_replication_role = replica")
            copy_rows(
                cursor,
                Event._meta.db_table,
                EVENT_COLUMNS,
                (
                    (
                        workspace.pk,
                        source_ids[i % len(source_ids)],
                        heavy.pk,
                        "segment",
                        "track" if i % 3 else "page",
                        TRACK_NAMES[i % len(TRACK_NAMES)] if i % 3 else PAGES[i % len(PAGES)],
                        f"heavy{i}",
                        "heavy-buyer",
                        "",
                        "",
                        "",
                        f'{{"sku": "SKU-{i % 499}", "price": {i % 295 + 5}}}',
                        "{}",
                        "{}",
                        (now - timedelta(seconds=rng.randrange(89 * 86400))).isoformat(),
                        now.isoformat(),
                        "f",
                        "browser",
                        None,
                        "",
                    )
                    for i in range(HEAVY_EVENTS)
                ),
            )
            cursor.execute("SET session_replication_role = DEFAULT")
            print(f"  a guest with {HEAVY_EVENTS:,} events added", flush=True)
            added = True
        if not FailedEvent.objects.filter(workspace=workspace).exists():
            codes = [
                ("missing_field", "type is required", "type"),
                ("invalid_timestamp", "timestamp is not a date", "timestamp"),
                ("too_large", "the message is over 32 KB", ""),
            ]
            copy_rows(
                cursor,
                FailedEvent._meta.db_table,
                [
                    "workspace_id",
                    "source_id",
                    "door",
                    "code",
                    "reason",
                    "field",
                    "payload",
                    "received_at",
                    "created_at",
                    "import_file",
                    "import_key",
                ],
                (
                    (
                        workspace.pk,
                        source_ids[i % len(source_ids)],
                        "segment",
                        *codes[i % 3],
                        '{"event": "Order Completed", "properties": {"price": 10}}',
                        (now - timedelta(minutes=i)).isoformat(),
                        (now - timedelta(minutes=i)).isoformat(),
                        "",
                        "",
                    )
                    for i in range(FAILED_EVENTS)
                ),
            )
            print(f"  {FAILED_EVENTS:,} failed events added", flush=True)
            added = True
        for table in (Event, Guest, Identity, FailedEvent) if added else ():
            cursor.execute(f"ANALYZE {table._meta.db_table}")


# --- timing -----------------------------------------------------------------------------------


def p95(values: list[float]) -> float:
    """The 95th percentile by the nearest rank (the worst of fewer than 20 loads)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def report(args) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.cache import cache
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from experiences.models import Experience
    from experiences.tasks import experiences_results_refresh
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
    extras_ensure(workspace)
    in_workspace = Event.objects.filter(workspace=workspace)
    event = in_workspace.filter(type="track").order_by("-timestamp").values_list("pk", flat=True)[0]
    tracking = (
        in_workspace.filter(type="TRACKING")
        .order_by("-timestamp")
        .values_list("pk", flat=True)
        .first()
    )
    heavy = Guest.objects.filter(workspace=workspace, email=HEAVY_EMAIL).values_list(
        "pk", flat=True
    )[0]
    source = Source.objects.filter(workspace=workspace).values_list("pk", flat=True)[0]
    segment = (
        Segment.objects.filter(workspace=workspace)
        .order_by("-member_count")
        .values_list("pk", flat=True)
        .first()
    )
    experience = (
        Experience.objects.filter(workspace=workspace, status=Experience.Status.LIVE)
        .values_list("pk", flat=True)
        .first()
    )
    rule = {
        "all": [
            {"trait": {"key": "plan", "op": "eq", "value": "pro"}},
            {
                "event": {
                    "name": "Order Completed",
                    "count": {"op": "gte", "value": 1},
                    "within_days": 30,
                }
            },
        ]
    }
    preview = json.dumps({"workspace": workspace.pk, "slug": "bench-preview", "rule": rule})
    # (name, address, POST body or None, clear the cache before each load)
    pages = [
        ("dashboard (warm cache)", "/admin/", None, False),
        ("dashboard (cold cache)", "/admin/", None, True),
        ("dashboard (30 days, by type)", "/admin/?period=30d&split=type", None, False),
        ("guest list", "/admin/profiles/guest/", None, False),
        ("guest list: in a segment", f"/admin/profiles/guest/?segment={segment}", None, False),
        ("guest profile (20k events)", f"/admin/profiles/guest/{heavy}/change/", None, False),
        ("events list", "/admin/tracking/event/", None, False),
        ("events: name, last 7 days", "/admin/tracking/event/?name=Search&within=7d", None, False),
        ("events: a guest's identifier", f"/admin/tracking/event/?q={HEAVY_EMAIL}", None, False),
        (
            "events: experience + variant",
            "/admin/tracking/event/?experience=hero_banner&variant=personal",
            None,
            False,
        ),
        ("event detail (track)", f"/admin/tracking/event/{event}/change/", None, False),
        ("event detail (TRACKING)", f"/admin/tracking/event/{tracking}/change/", None, False),
        ("sessions list", "/admin/profiles/session/", None, False),
        ("segment list", "/admin/profiles/segment/", None, False),
        ("segment page (rule builder)", f"/admin/profiles/segment/{segment}/change/", None, False),
        ("segment: live count + sample", "/admin/profiles/segment/preview/", preview, False),
        (
            "segment: builder names",
            f"/admin/profiles/segment/names/?workspace={workspace.pk}",
            None,
            False,
        ),
        ("experience list", "/admin/experiences/experience/", None, False),
        (
            "experience page (results)",
            f"/admin/experiences/experience/{experience}/change/",
            None,
            False,
        ),
        ("source list", "/admin/tracking/source/", None, False),
        ("source page", f"/admin/tracking/source/{source}/change/", None, False),
        ("source debugger poll", f"/admin/tracking/source/{source}/debugger/", None, False),
        ("failed events list", "/admin/tracking/failedevent/", None, False),
    ]
    admin, _ = users.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    clients = []
    for who, user in (("marketer", marketer), ("superuser", admin)):
        client = Client()
        client.force_login(user)
        clients.append((who, client))
    total = Event.objects.count() if args.quick else None
    estimate = _estimate_rows("tracking_event")
    # What beat does every few minutes: the live experiences' results into the cache.
    started = time.perf_counter()
    refreshed = experiences_results_refresh()
    refresh_s = time.perf_counter() - started
    print(
        f"\nevents in the table: {total or estimate:,}{'' if total else ' (planner estimate)'}  "
        f"guests: {Guest.objects.count():,}  loads per page: 1 first + {args.loads}  "
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        f"the beat task refreshed {refreshed} experiences' results in {refresh_s:.1f} s"
    )
    head = f"{'page':32} {'as':9} {'first':>6} {'median':>7} {'p95':>6} {'queries':>7}  target"
    print(f"{head}\n{'-' * 32} {'-' * 9} {'-' * 6} {'-' * 7} {'-' * 6} {'-' * 7}  {'-' * 14}")
    missed = []
    for name, url, body, cold in pages:
        if args.only and not any(word in name for word in args.only):
            continue
        for who, client in clients:
            times = []
            status = None
            for _ in range(args.loads + 1):
                if cold:
                    cache.clear()
                with CaptureQueriesContext(connection) as captured:
                    start = time.perf_counter()
                    if body is None:
                        response = client.get(url)
                    else:
                        response = client.post(url, body, content_type="application/json")
                    times.append((time.perf_counter() - start) * 1000)
                status = response.status_code
            if cold:
                experiences_results_refresh()
            if status != 200:
                print(f"{name:32} {who:9} HTTP {status}: not shown to them")
                continue
            if response["Content-Type"] == "application/json" and "error" in response.json():
                print(f"{name:32} {who:9} refused: {response.json()['error']}")
                continue
            first, loads = times[0], times[1:]
            middle = statistics.median(loads)
            met = middle < TARGET_MS
            if not met:
                missed.append(f"{name} ({who})")
            print(
                f"{name:32} {who:9} {first:6.0f} {middle:7.0f} {p95(loads):6.0f} "
                f"{len(captured):7d}  {'met' if met else 'NOT MET'} (< {TARGET_MS} ms)",
                flush=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\nevery page met the target" if not missed else f"\nover target: {', '.join(missed)}")


def _estimate_rows(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE relname = %s", [table])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    main()
