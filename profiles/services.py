"""Everything in profiles that writes: guest creation and identity resolution."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING

from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Greatest, Least

from .models import Guest, Identity

if TYPE_CHECKING:
    from tracking.messages import Message

IdentityKey = tuple[int, str, str]  # (workspace_id, kind, value)


def identities_lookup(keys: set[IdentityKey]) -> dict[IdentityKey, int]:
    """Guest ids of the identities that exist among ``keys``, in one query."""
    if not keys:
        return {}
    by_kind: dict[tuple[int, str], list[str]] = defaultdict(list)
    for workspace_id, kind, value in keys:
        by_kind[(workspace_id, kind)].append(value)
    condition = reduce(
        or_,
        (
            Q(workspace_id=workspace_id, kind=kind, value__in=values)
            for (workspace_id, kind), values in by_kind.items()
        ),
    )
    return {
        (workspace_id, kind, value): guest_id
        for workspace_id, kind, value, guest_id in Identity.objects.filter(condition).values_list(
            "workspace_id", "kind", "value", "guest_id"
        )
    }


def guests_resolve(*, messages: list[Message]) -> None:
    """Give every message a guest (``message.guest_id``), creating guests and identities.

    Set-based: a handful of queries per batch whatever its size. Unknown identifiers create a
    visitor guest (a customer if a known-person identifier such as user_id is among them).
    Creation is race-free: identities are inserted with ON CONFLICT DO NOTHING and then read
    back, so when two workers create the same identity at once both end up using the winner's
    guest, and a guest that won nothing is removed again.
    """
    if not messages:
        return
    wanted: set[IdentityKey] = {
        (m.workspace_id, kind, value) for m in messages for kind, value in m.identifiers
    }
    existing = identities_lookup(wanted)
    owner: dict[IdentityKey, int | Guest] = dict(existing)
    new_guests: list[Guest] = []
    # Oldest first, so a batch gives the same guests whatever order its messages came in.
    for message in sorted(messages, key=lambda m: (m.timestamp, m.message_id)):
        keys = [(message.workspace_id, kind, value) for kind, value in message.identifiers]
        guest = next((owner[key] for key in keys if key in owner), None)
        if guest is None:
            guest = Guest(
                ref=uuid.uuid4(),
                workspace_id=message.workspace_id,
                first_seen=message.timestamp,
                last_seen=message.timestamp,
            )
            new_guests.append(guest)
        elif isinstance(guest, Guest):
            guest.first_seen = min(guest.first_seen, message.timestamp)
            guest.last_seen = max(guest.last_seen, message.timestamp)
        for key in keys:
            owner.setdefault(key, guest)

    for key, guest in owner.items():
        if isinstance(guest, Guest) and key[1] in Identity.KNOWN_KINDS:
            guest.guest_type = Guest.Type.CUSTOMER
    if new_guests:
        Guest.objects.bulk_create(new_guests)

    created = sorted(key for key in owner if key not in existing)
    if created:
        Identity.objects.bulk_create(
            [
                Identity(workspace_id=key[0], kind=key[1], value=key[2], guest_id=_pk(owner[key]))
                for key in created
            ],
            ignore_conflicts=True,
        )
        resolved = {**existing, **identities_lookup(set(created))}
    else:
        resolved = existing

    for message in messages:
        workspace_id = message.workspace_id
        kind, value = message.identifiers[0]
        message.guest_id = resolved[(workspace_id, kind, value)]

    lost = {g.pk for g in new_guests} - set(resolved.values())
    if lost:
        Guest.objects.filter(pk__in=lost).delete()
    _guests_touch(messages=messages, skip={g.pk for g in new_guests} - lost)
    _guests_promote(
        keys=[key for key in created if key[1] in Identity.KNOWN_KINDS], owners=resolved
    )


def _pk(guest: int | Guest) -> int:
    return guest.pk if isinstance(guest, Guest) else guest


def _guests_touch(*, messages: list[Message], skip: set[int]) -> None:
    """Widen first_seen/last_seen of existing guests to cover the messages, in one UPDATE."""
    span: dict[int, tuple[datetime, datetime]] = {}
    for message in messages:
        if message.guest_id in skip:
            continue
        first, last = span.get(message.guest_id, (message.timestamp, message.timestamp))
        span[message.guest_id] = (min(first, message.timestamp), max(last, message.timestamp))
    if not span:
        return
    Guest.objects.filter(pk__in=span).update(
        first_seen=Least(
            F("first_seen"),
            Case(*[When(pk=pk, then=Value(first)) for pk, (first, _) in span.items()]),
        ),
        last_seen=Greatest(
            F("last_seen"),
            Case(*[When(pk=pk, then=Value(last)) for pk, (_, last) in span.items()]),
        ),
    )


def _guests_promote(*, keys: list[IdentityKey], owners: dict[IdentityKey, int]) -> None:
    """A guest that gained a known-person identity is a customer."""
    guest_ids = {owners[key] for key in keys}
    if guest_ids:
        Guest.objects.filter(pk__in=guest_ids, guest_type=Guest.Type.VISITOR).update(
            guest_type=Guest.Type.CUSTOMER
        )
