"""Reads of guests used by more than one caller (API, admin, commands)."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

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
