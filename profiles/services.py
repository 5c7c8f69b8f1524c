"""Everything in profiles that writes outside the pipeline: erasure and its suppression list."""

from __future__ import annotations

import hashlib
from itertools import chain
from typing import TYPE_CHECKING

from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q

from .models import Erasure, Guest, GuestDay, GuestMerge, Identity, Session, SuppressedIdentity

if TYPE_CHECKING:
    from tracking.messages import Message


def identity_digest(workspace_id: int, kind: str, value: str) -> str:
    """The one-way hash an erased identifier is remembered by."""
    text = f"{workspace_id}\x1f{kind}\x1f{value}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def messages_suppressed_drop(messages: list[Message]) -> list[Message]:
    """The messages that carry no identifier of an erased guest (one query per batch)."""
    if not messages:
        return messages
    digests = {
        id(message): [identity_digest(message.workspace_id, k, v) for k, v in message.identifiers]
        for message in messages
    }
    suppressed = set(
        SuppressedIdentity.objects.filter(
            digest__in={d for ds in digests.values() for d in ds}
        ).values_list("digest", flat=True)
    )
    if not suppressed:
        return messages
    return [m for m in messages if not suppressed.intersection(digests[id(m)])]


@transaction.atomic
def guest_erase(*, guest: Guest, erased_by: str) -> Erasure:
    """Erase a guest: its events, sessions, identities, merged guests and failed events.

    Keeps an audit row with counts and the guest's ref only, and remembers the guest's
    identifiers as one-way hashes so later events carrying them are dropped.
    """
    from tracking.models import Event, FailedEvent
    from tracking.store import catalogue_examples_forget, example_values

    guest = Guest.objects.select_for_update().get(pk=guest.pk)
    guest_ids = [guest.pk, *Guest.objects.filter(merged_into=guest).values_list("pk", flat=True)]
    identity_rows = list(
        Identity.objects.filter(guest_id__in=guest_ids).values_list("pk", "kind", "value")
    )
    identities = [(kind, value) for _, kind, value in identity_rows]
    # An alias's previous id comes back as a user id or an anonymous id: both are dropped.
    suppressed = {
        (matched, value) for kind, value in identities for matched in Identity.kinds_matched(kind)
    }
    erasure = Erasure.objects.create(
        workspace_id=guest.workspace_id,
        guest_ref=guest.ref,
        erased_by=erased_by,
        identities=len(identities),
    )
    SuppressedIdentity.objects.bulk_create(
        [
            SuppressedIdentity(
                workspace_id=guest.workspace_id,
                digest=identity_digest(guest.workspace_id, kind, value),
                erasure=erasure,
            )
            for kind, value in suppressed
        ],
        ignore_conflicts=True,
    )
    # The catalogue's example values may be this guest's: they go with the events.
    sent = Event.objects.filter(guest_id__in=guest_ids).values_list("properties", "traits")
    examples = example_values(chain.from_iterable(sent.iterator(chunk_size=2000)))
    examples |= example_values([guest.traits])
    catalogue_examples_forget(workspace_id=guest.workspace_id, values=examples)
    GuestDay.objects.filter(guest_id__in=guest_ids).delete()
    erasure.events, _ = Event.objects.filter(guest_id__in=guest_ids).delete()
    erasure.sessions, _ = Session.objects.filter(guest_id__in=guest_ids).delete()
    ids = {value for _, value in identities}
    if ids:
        FailedEvent.objects.filter(workspace_id=guest.workspace_id).filter(
            Q(payload__userId__in=ids) | Q(payload__anonymousId__in=ids)
        ).delete()
    Identity.objects.filter(guest_id__in=guest_ids).delete()
    GuestMerge.objects.filter(guest_id__in=guest_ids).delete()
    Guest.objects.filter(merged_into_id__in=guest_ids).exclude(pk__in=guest_ids).update(
        merged_into=None
    )
    Guest.objects.filter(pk__in=guest_ids).delete()
    # The admin's history names the objects it changed (a guest's email, an identifier).
    for model, pks in ((Guest, guest_ids), (Identity, [pk for pk, _, _ in identity_rows])):
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(model),
            object_id__in=[str(pk) for pk in pks],
        ).delete()
    erasure.save(update_fields=["events", "sessions"])
    return erasure


MARKETERS = "Marketers"
# What the Marketers group may view (and nothing more): guests, their sessions and events,
# segments, experiences, and the sources (whose pages hold the install snippets and the live
# debugger).
MARKETERS_READABLE = {
    "profiles": ["guest", "identity", "session", "guestmerge", "segment"],
    "tracking": ["event", "source"],
    "experiences": ["experience"],
}
# What they may also add and change: segments (the rule builder is theirs).
MARKETERS_EDITABLE = {"profiles": ["segment"]}
VERBS_EDIT = ("view", "add", "change")


def marketers_group_ensure(**kwargs) -> None:
    """Make sure the Marketers group exists with its view permissions.

    Run after every ``migrate`` (and after a test database is flushed, which emits the same
    signal), so the group is there whatever created the database.
    """
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=MARKETERS)
    for app_label, models in MARKETERS_READABLE.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label,
                codename__in=[f"view_{model}" for model in models],
            )
        )
    for app_label, models in MARKETERS_EDITABLE.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=app_label,
                codename__in=[f"{verb}_{model}" for model in models for verb in VERBS_EDIT],
            )
        )


def retention_sessions(*, workspace_id: int, cutoff) -> dict:
    """Retention's targets in profiles (after the events went): the sessions that ended before
    the window and no longer hold an event."""
    from django.db.models import Exists, OuterRef

    from tracking.models import Event

    kept_events = Event.objects.filter(session=OuterRef("pk"), timestamp__gte=cutoff)
    return {
        "sessions": Session.objects.filter(workspace_id=workspace_id, ended_at__lt=cutoff).filter(
            ~Exists(kept_events)
        )
    }
