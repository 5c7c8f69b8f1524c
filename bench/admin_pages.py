"""Time the admin pages marketers use most, on whatever database DATABASE_URL points at.

    DATABASE_URL=postgres://…/footprint_demo .venv/bin/python bench/admin_pages.py

Fill the database first (``manage.py seed_demo --guests 53000 --days 90`` gives about a
million events). Prints one row per page: median and worst time of 5 loads, and the number of
SQL queries.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
os.environ.setdefault("DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from profiles.models import Guest  # noqa: E402
from tracking.models import Event, Workspace  # noqa: E402

LOADS = 5


def main() -> None:
    settings.ALLOWED_HOSTS = ["*"]
    users = get_user_model()
    marketer, _ = users.objects.get_or_create(
        username="bench-marketer", defaults={"is_staff": True}
    )
    marketer.groups.add(Group.objects.get(name="Marketers"))
    for workspace in Workspace.objects.all():
        workspace.members.add(marketer)
    busy = (
        Guest.objects.filter(merged_into=None)
        .annotate(n=Count("events"))
        .order_by("-n")
        .values_list("pk", "email", "n")[:1]
        .get()
    )
    some_email = Guest.objects.exclude(email="").values_list("email", flat=True)[:1].get()
    pages = [
        ("events list", "/admin/tracking/event/"),
        ("events: type=track, last 7 days", "/admin/tracking/event/?type=track&within=7d"),
        ("events: page 50", "/admin/tracking/event/?p=50"),
        ("guests list", "/admin/profiles/guest/"),
        ("guests: search by email", f"/admin/profiles/guest/?q={some_email[:12]}"),
        (f"guest page ({busy[2]} events)", f"/admin/profiles/guest/{busy[0]}/change/"),
        ("guest page, timeline page 3", f"/admin/profiles/guest/{busy[0]}/change/?timeline=3"),
        ("sessions list", "/admin/profiles/session/"),
    ]
    client = Client()
    client.force_login(marketer)
    print(f"events in the table: {Event.objects.count():,}  guests: {Guest.objects.count():,}")
    print(f"{'page':40} {'median ms':>10} {'worst ms':>10} {'queries':>8}")
    for name, url in pages:
        times = []
        for _ in range(LOADS):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"{name:40} {statistics.median(times):10.0f} {max(times):10.0f} {len(captured):8d}")


if __name__ == "__main__":
    main()
