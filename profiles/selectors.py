"""Reads of guests used by more than one caller (API, admin, commands)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from tracking import channels

from .models import Guest, Identity

MAX_MERGE_HOPS = 16


def guest_get_by_ref(*, ref: str | uuid.UUID, guests: QuerySet[Guest]) -> Guest | None:
    """The guest with this ref among ``guests``, following merges to the surviving guest."""
    try:
        ref = uuid.UUID(str(ref))
    except ValueError:
        return None
    guest = guests.filter(ref=ref).first()
    hops = 0
    while guest is not None and guest.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        guest = guests.filter(pk=guest.merged_into_id).first()
        hops += 1
    return guest


def guests_by_identifier(
    *, value: str, kind: str | None, guests: QuerySet[Guest]
) -> QuerySet[Guest]:
    """Guests with an identity of this value (of this kind, when given), or this email.

    An alias's previous id counts as a user id and as an anonymous id of its guest.
    """
    identities = Identity.objects.filter(value=value)
    if kind in Identity.PREVIOUS_ID_MATCHES:
        identities = identities.filter(kind__in=[kind, Identity.Kind.PREVIOUS_ID])
    elif kind:
        identities = identities.filter(kind=kind)
    matched = guests.filter(pk__in=identities.values("guest_id"))
    if not kind or kind == Identity.Kind.EMAIL:
        matched = matched | guests.filter(email__iexact=value)
    return matched.distinct()


def guest_segments(guest: Guest) -> list[str]:
    """Slugs of the segments the guest is a member of now."""
    return list(
        guest.memberships.filter(exited_at__isnull=True)
        .order_by("segment__slug")
        .values_list("segment__slug", flat=True)
    )


# --- The guest page ----------------------------------------------------------------------------

# The guest page reads at most this many of a guest's latest events for its totals and chart,
# so a guest with millions of events (a bot, a shared device) costs the same as one with this many.
PROFILE_EVENTS_READ = 10_000
PROFILE_SESSIONS_READ = 10_000
PROFILE_CHART_DAYS = 30
PROFILE_IDENTITIES = 200


@dataclass(frozen=True)
class GuestTotals:
    events: int
    events_capped: bool
    sessions: int
    sessions_capped: bool
    revenue: list[tuple[str, Decimal]]  # (currency, sum), largest first
    last_channel: str
    last_event_at: datetime | None
    # Events per day over the last PROFILE_CHART_DAYS days, oldest first.
    per_day: list[tuple[date, int]]


def guest_totals(guest: Guest, *, now: datetime | None = None, tz=None) -> GuestTotals:
    """Totals of the guest's latest ``PROFILE_EVENTS_READ`` events (and sessions), in a few
    bounded queries on the guest's indexes: events, sessions, revenue by currency, the last
    channel and events per day."""
    from tracking.models import Event

    now = now or timezone.now()
    tz = tz or timezone.get_current_timezone()
    # One read of the latest events' few columns, newest first; everything else is counted
    # from it (on a partitioned events table a subquery of ids would probe every month).
    rows = list(
        Event.objects.filter(guest=guest)
        .order_by("-timestamp")
        .values_list("timestamp", "revenue", "currency", "channel")[: PROFILE_EVENTS_READ + 1]
    )
    events = len(rows)
    read = rows[:PROFILE_EVENTS_READ]
    sessions = guest.sessions.order_by()[: PROFILE_SESSIONS_READ + 1].count()
    by_currency: dict[str, Decimal] = {}
    for _, amount, currency, _ in read:
        if amount is not None:
            by_currency[currency or ""] = by_currency.get(currency or "", Decimal(0)) + amount
    revenue = sorted(by_currency.items(), key=lambda item: -item[1])
    last = rows[0] if rows else None
    today = now.astimezone(tz).date()
    first_day = today - timedelta(days=PROFILE_CHART_DAYS - 1)
    counted: dict[date, int] = {}
    for moment, *_ in read:
        day = moment.astimezone(tz).date()
        if day < first_day:
            break
        counted[day] = counted.get(day, 0) + 1
    per_day = [
        (first_day + timedelta(days=offset), counted.get(first_day + timedelta(days=offset), 0))
        for offset in range(PROFILE_CHART_DAYS)
    ]
    return GuestTotals(
        events=min(events, PROFILE_EVENTS_READ),
        events_capped=events > PROFILE_EVENTS_READ,
        sessions=min(sessions, PROFILE_SESSIONS_READ),
        sessions_capped=sessions > PROFILE_SESSIONS_READ,
        revenue=revenue,
        last_channel=channels.channel_label(last[3]) if last else "",
        last_event_at=last[0] if last else None,
        per_day=per_day,
    )


def guest_identities_by_kind(guest: Guest) -> list[tuple[str, list[Identity]]]:
    """The guest's identities (up to ``PROFILE_IDENTITIES``) grouped by kind, known kinds first."""
    labels = dict(Identity.Kind.choices)
    groups: dict[str, list[Identity]] = {}
    for identity in guest.identities.order_by("kind", "created_at")[:PROFILE_IDENTITIES]:
        groups.setdefault(identity.kind, []).append(identity)
    order = [kind for kind in labels if kind in groups] + sorted(
        kind for kind in groups if kind not in labels
    )
    return [(labels.get(kind, kind), groups[kind]) for kind in order]


# --- The rule builder ---------------------------------------------------------------------------

# The most names of each kind the builder is offered (the catalogue of a busy workspace can hold
# many more property keys than a person picks from).
RULE_NAMES_LIMIT = 1000


def rule_names(*, workspace_id: int) -> dict:
    """The names a segment rule of the workspace can use, from the event and trait catalogue:
    event names, trait keys, each event's property keys, and the workspace's segment slugs."""
    from tracking.selectors import catalogue_event_names, catalogue_keys

    from .models import Segment

    properties: dict[str, list[str]] = {}
    for key in catalogue_keys(workspace_ids=[workspace_id], kind="property")[:RULE_NAMES_LIMIT]:
        properties.setdefault(key.event_name, []).append(key.key)
    traits = catalogue_keys(workspace_ids=[workspace_id], kind="trait")[:RULE_NAMES_LIMIT]
    return {
        "events": catalogue_event_names(workspace_ids=[workspace_id])[:RULE_NAMES_LIMIT],
        "traits": sorted({key.key for key in traits}),
        "properties": properties,
        "segments": list(
            Segment.objects.filter(workspace_id=workspace_id)
            .order_by("slug")
            .values_list("slug", flat=True)[:RULE_NAMES_LIMIT]
        ),
    }
