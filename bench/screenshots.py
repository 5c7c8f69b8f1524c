"""Full-page screenshots of the admin as a marketer sees it, at 1440 px, for review.

    make screenshots                       # into screenshots/
    .venv/bin/python bench/screenshots.py --out DIR --guests 300

Builds a fresh SQLite database in a temporary folder, fills it with ``manage.py seed_demo``,
starts the development server on a free port, logs in as a member of the Marketers group and
saves one PNG per entry of ``PAGES``. To add a page, add a line to ``PAGES``: a file name and
a path, where ``{event}``, ``{tracking_event}``, ``{guest}``, ``{session}``, ``{source}``,
``{segment}`` and ``{experience}`` stand for the id of one such record of the demo data (the
page is skipped, and says so, when the data has none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

PAGES = [
    ("01-dashboard", "/admin/"),
    ("02-dashboard-30-days-by-type", "/admin/?period=30d&split=type"),
    ("03-guests", "/admin/profiles/guest/"),
    ("04-guest-profile", "/admin/profiles/guest/{guest}/change/"),
    ("05-events", "/admin/tracking/event/"),
    ("06-events-by-name", "/admin/tracking/event/?name=Order%20Completed"),
    ("07-event-detail", "/admin/tracking/event/{event}/change/"),
    ("08-event-detail-tracking", "/admin/tracking/event/{tracking_event}/change/"),
    ("09-sessions", "/admin/profiles/session/"),
    ("10-segments", "/admin/profiles/segment/"),
    ("11-segment", "/admin/profiles/segment/{segment}/change/"),
    ("12-experiences", "/admin/experiences/experience/"),
    ("13-experience", "/admin/experiences/experience/{experience}/change/"),
    ("14-sources", "/admin/tracking/source/"),
    ("15-source-debugger", "/admin/tracking/source/{source}/change/"),
]
PASSWORD = "screenshots-pw"  # noqa: S105 - a throwaway database's user
WIDTH = 1440


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(env: dict, guests: int) -> dict[str, int | None]:
    """Migrate and seed the database; make the marketer; return the ids ``PAGES`` use."""
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from django.db import connection, transaction

    call_command("migrate", verbosity=0)
    call_command("seed_demo", guests=guests, quiet=True)

    from experiences.models import Experience, Metric, Variant
    from experiences.services import experience_status_set
    from profiles.models import Guest, Segment, Session
    from profiles.segments import segment_recompute
    from tracking.models import Event, Source, Workspace

    user, _ = get_user_model().objects.get_or_create(username="marketer")
    user.set_password(PASSWORD)
    user.is_staff = True
    user.save()
    user.groups.add(Group.objects.get(name="Marketers"))
    for workspace in Workspace.objects.all():
        workspace.members.add(user)
    # Beyond seed_demo's traffic: two segments and a live experience, so their pages and the
    # dashboard's cards have something to show.
    demo = Workspace.objects.get(name="Demo")
    bought = {"name": "Order Completed", "count": {"op": "gte", "value": 1}, "within_days": 90}
    for slug, name, rule in [
        ("buyers", "Bought something", {"event": bought}),
        (
            "customers",
            "Known customers",
            {"field": {"name": "guest_type", "op": "eq", "value": "customer"}},
        ),
    ]:
        segment, _ = Segment.objects.get_or_create(
            workspace=demo, slug=slug, defaults={"name": name, "rule": rule}
        )
        segment_recompute(segment)
    experience, made = Experience.objects.get_or_create(
        workspace=demo,
        friendly_id="hero_banner",
        defaults={"name": "Hero banner"},
    )
    if made:
        Metric.objects.create(experience=experience, event="Order Completed")
        Variant.objects.create(experience=experience, name="Control", weight=50, is_control=True)
        Variant.objects.create(experience=experience, name="Personal", weight=50)
        with transaction.atomic():
            experience = experience_status_set(experience=experience, status=Experience.Status.LIVE)
        exposures_send(demo, experience)
    # What beat does every few minutes: the live experiences' results into the cache (a file
    # cache, shared with the server), so the dashboard shows them.
    from experiences.tasks import experiences_results_refresh

    experiences_results_refresh()

    def first(queryset):
        return queryset.values_list("pk", flat=True).first()

    ids = {
        "event": first(Event.objects.filter(type="track").order_by("-timestamp")),
        "tracking_event": first(Event.objects.filter(type="TRACKING").order_by("-timestamp")),
        "guest": first(
            Guest.objects.filter(merged_into=None).exclude(email="").order_by("-last_seen")
        ),
        "session": first(Session.objects.order_by("-started_at")),
        "source": first(Source.objects.order_by("pk")),
        "segment": first(Segment.objects.order_by("-member_count")),
        "experience": first(Experience.objects.order_by("pk")),
    }
    connection.close()
    return ids


EXPOSED_CUSTOMERS = 120


def exposures_send(workspace, experience) -> None:
    """Run the experience for the demo's known customers through ``/v2/callFlows``'s service,
    then send the orders some of them place afterwards, so the experience page has results
    (seed_demo's own orders all come before anyone saw the experience, and do not count).
    More of those shown the personal variant buy, as if it worked."""
    import random

    import orjson
    from django.utils import timezone

    from experiences.flows import flow_definition_get
    from experiences.services import flow_call
    from profiles.models import Identity
    from tracking import services
    from tracking.models import InboxRequest, Source

    rng = random.Random(3)
    users = Identity.objects.filter(workspace=workspace, kind=Identity.Kind.USER_ID)
    definition = flow_definition_get(
        client_key=workspace.client_key, friendly_id=experience.friendly_id
    )
    orders = []
    for user in users.order_by("pk").values_list("value", flat=True)[:EXPOSED_CUSTOMERS]:
        body = {
            "clientKey": workspace.client_key,
            "friendlyId": experience.friendly_id,
            "identifiers": {"provider": "user_id", "id": user},
        }
        decision = flow_call(definition=definition, body=body, raw=orjson.dumps(body))
        if not decision.exposed:
            continue
        rate = 0.2 if decision.variant.is_control else 0.35
        if rng.random() < rate:
            orders.append(user)
    services.inbox_drain()
    # Bought after being shown the experience: timestamped a moment later.
    later = (timezone.now() + timedelta(seconds=5)).isoformat()
    batch = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": user,
            "properties": {"revenue": 35.0, "currency": "EUR"},
            "timestamp": later,
            "messageId": f"after-exposure-{index}",
        }
        for index, user in enumerate(orders)
    ]
    InboxRequest.objects.create(
        source=Source.objects.filter(workspace=workspace).order_by("pk").first(),
        body=orjson.dumps({"batch": batch}),
        meta={"route": "batch"},
        received_at=timezone.now(),
    )
    services.inbox_drain()


def wait_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)  # noqa: S310 - our own local server
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not answer at {url}")


def shoot(base: str, ids: dict, out: Path, chromium: str, *, top: bool) -> list[str]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH, "height": 900}, timezone_id="Europe/Berlin"
            )
            page = context.new_page()
            page.goto(f"{base}/admin/login/")
            page.fill("#id_username", "marketer")
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_load_state("networkidle")
            for name, path in PAGES:
                try:
                    url = base + path.format(**ids)
                except KeyError as missing:
                    print(f"  {name}: skipped, no placeholder {missing}")
                    continue
                if "None" in url:
                    print(f"  {name}: skipped, the demo data has no such record")
                    continue
                response = page.goto(url)
                page.wait_for_load_state("networkidle")
                status = response.status if response else "?"
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                if top:
                    page.screenshot(path=str(out / f"{name}-top.png"))
                width = page.evaluate("document.documentElement.scrollWidth")
                note = "" if width <= WIDTH else f"  (page is {width} px wide!)"
                print(f"  {name}: HTTP {status} {path}{note}")
                saved.append(str(target))
        finally:
            browser.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="folder for the PNGs")
    parser.add_argument("--guests", type=int, default=300, help="people seed_demo simulates")
    parser.add_argument(
        "--top", action="store_true", help="also the first screenful of each page (NAME-top.png)"
    )
    args = parser.parse_args()
    chromium = os.environ.get("FOOTPRINT_CHROMIUM") or shutil.which("chromium")
    if not chromium:
        sys.exit("needs Chromium: apt-get install chromium (or set FOOTPRINT_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="footprint-screenshots-") as folder:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": f"sqlite:///{folder}/db.sqlite3",
            "CACHE_URL": f"filecache://{folder}/cache",
            "DEBUG": "1",
            "FOOTPRINT_EMBEDDED_BEAT": "0",
        }
        env.pop("CELERY_BROKER_URL", None)
        print("Seeding the demo workspace …")
        ids = prepare(env, args.guests)
        port = free_port()
        server = subprocess.Popen(
            [PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_up(f"{base}/healthz")
            print(f"Screenshots at {WIDTH} px into {args.out}:")
            saved = shoot(base, ids, Path(args.out), chromium, top=args.top)
        finally:
            server.terminate()
            server.wait(timeout=10)
    print(f"saved {len(saved)} page(s)")


if __name__ == "__main__":
    main()
