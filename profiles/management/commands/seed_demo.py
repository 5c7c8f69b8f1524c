"""A realistic demo workspace, sent through the real pipeline."""

import random
from datetime import timedelta

import orjson
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from tracking import services
from tracking.models import InboxRequest, Source, Workspace

PAGES = ["/", "/shoes", "/shoes/runner-2", "/bags", "/bags/tote", "/sale", "/cart", "/checkout"]
PRODUCTS = [("runner-2", "Runner 2", 89.0), ("tote", "Canvas tote", 35.0), ("cap", "Cap", 19.5)]
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Linus", "Frances"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Allen"]
SOURCES = [
    ("Web shop", Source.Kind.WEB),
    ("Shop app", Source.Kind.IOS),
    ("Stores", Source.Kind.POS),
]
MESSAGES_PER_REQUEST = 100
REQUESTS_PER_TRANSACTION = 2


class Command(BaseCommand):
    help = (
        "Fill a demo workspace with guests across channels: visits with page views, product "
        "views, orders with revenue and identify calls that merge anonymous visitors into "
        "customers. Everything goes through the inbox and the processing pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workspace", default="Demo", help="workspace name (created)")
        parser.add_argument("--guests", type=int, default=300, help="people to simulate")
        parser.add_argument("--days", type=int, default=30, help="history to spread them over")
        parser.add_argument(
            "--seed", type=int, default=7, help="random seed (same seed, same data)"
        )
        parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def handle(self, *args, workspace, guests, days, seed, quiet, **options):
        if guests < 1:
            raise CommandError("--guests must be at least 1")
        if days < 1:
            raise CommandError("--days must be at least 1")
        space = Workspace.objects.filter(name=workspace).first() or services.workspace_create(
            name=workspace
        )
        sources = {}
        for name, kind in SOURCES:
            source = Source.objects.filter(workspace=space, name=name).first()
            sources[kind] = source or services.source_create(workspace=space, name=name, kind=kind)

        rng = random.Random(seed)
        now = timezone.now()
        run = f"{seed}-{now:%Y%m%d%H%M%S}"
        journeys = [
            (message["timestamp"], sources[kind].pk, message)
            for person in range(guests)
            for kind, message in _journey(rng, person, run, now=now, days=days)
        ]
        # Sent in time order, as the sources would have: later identify calls then merge
        # guests that earlier requests created.
        journeys.sort(key=lambda item: item[0])
        pending: dict[int, list[dict]] = {source.pk: [] for source in sources.values()}
        rows = 0
        for position, (_, source_id, message) in enumerate(journeys, start=1):
            pending[source_id].append(message)
            if len(pending[source_id]) == MESSAGES_PER_REQUEST or position == len(journeys):
                for full_id, chunk in pending.items():
                    if chunk and (full_id == source_id or position == len(journeys)):
                        InboxRequest.objects.create(
                            source_id=full_id,
                            body=orjson.dumps({"batch": chunk, "sentAt": now.isoformat()}),
                            meta={"route": "batch"},
                            received_at=now,
                        )
                        rows += 1
                        pending[full_id] = []
        total = len(journeys)

        stored = 0
        with tqdm(total=rows, unit="request", disable=quiet, desc="processing") as bar:
            while True:
                stats = services.inbox_drain(claim_size=REQUESTS_PER_TRANSACTION, max_batches=1)
                if stats.requests + stats.failed_requests == 0:
                    break
                stored += stats.stored
                bar.update(stats.requests + stats.failed_requests)
        self.stdout.write(
            f"workspace {space.name}: sent {total} message(s) in {rows} request(s), "
            f"stored {stored} event(s) for {guests} simulated people"
        )


def _journey(rng: random.Random, person: int, run: str, *, now, days: int):
    """One person's visits: (source kind, Segment message) pairs."""
    user_id = f"user-{run}-{person}" if rng.random() < 0.6 else None
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}.{person}@example.com".lower()
    kind = rng.choices([Source.Kind.WEB, Source.Kind.IOS, Source.Kind.POS], [6, 3, 1])[0]
    at = now - timedelta(days=rng.uniform(0, days))
    identified = False
    for visit in range(rng.randint(1, 5)):
        # Each device has its own anonymous id: an identify there merges it into the customer.
        device = {"anonymousId": f"{kind}-{run}-{person}"}
        for step in range(rng.randint(1, 8)):
            at += timedelta(seconds=rng.randint(5, 240))
            stamp = {"timestamp": at.isoformat(), "messageId": f"{run}-{person}-{visit}-{step}"}
            path = rng.choice(PAGES)
            yield (
                kind,
                {
                    "type": "page" if kind == Source.Kind.WEB else "screen",
                    "name": path,
                    "properties": {"url": f"https://shop.example{path}", "path": path},
                    **device,
                    **stamp,
                },
            )
            if rng.random() < 0.3:
                sku, name, price = rng.choice(PRODUCTS)
                yield (
                    kind,
                    {
                        "type": "track",
                        "event": "Product Viewed",
                        "properties": {"sku": sku, "name": name, "price": price},
                        **device,
                        "timestamp": at.isoformat(),
                        "messageId": f"{stamp['messageId']}-pv",
                    },
                )
        if user_id and rng.random() < (0.7 if not identified else 0.4):
            identified = True
            at += timedelta(seconds=30)
            yield (
                kind,
                {
                    "type": "identify",
                    "userId": user_id,
                    **device,
                    "traits": {
                        "email": email,
                        "firstName": first,
                        "lastName": last,
                        "plan": rng.choice(["free", "plus", "pro"]),
                        "country": rng.choice(["NL", "DE", "GB", "US"]),
                    },
                    "timestamp": at.isoformat(),
                    "messageId": f"{run}-{person}-{visit}-identify",
                },
            )
        if identified and rng.random() < 0.35:
            at += timedelta(seconds=60)
            sku, name, price = rng.choice(PRODUCTS)
            quantity = rng.randint(1, 3)
            yield (
                kind,
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": user_id,
                    **device,
                    "properties": {
                        "order_id": f"o-{run}-{person}-{visit}",
                        "revenue": round(price * quantity, 2),
                        "currency": "EUR",
                        "products": [
                            {"sku": sku, "name": name, "price": price, "quantity": quantity}
                        ],
                    },
                    "timestamp": at.isoformat(),
                    "messageId": f"{run}-{person}-{visit}-order",
                },
            )
        at += timedelta(hours=rng.uniform(2, 72))
        if at > now:
            break
        if rng.random() < 0.25:
            kind = rng.choice([Source.Kind.WEB, Source.Kind.IOS])
