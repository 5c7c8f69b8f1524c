"""Identity resolution: which guest each message belongs to, and which guests are one person.

Runs inside the pipeline's transaction, set-based: a few queries per batch whatever its size.

1. Look up the identities the batch names and lock their guests (in id order, so workers that
   share guests queue instead of deadlocking).
2. Plan, in Python, over the messages oldest first: each message anchors on the guest of its
   strongest identifier; the other guests its identifiers point at are merged into the anchor
   unless that would join two different user_ids; identifiers nobody owns yet go to the anchor,
   and a message nobody knows opens a new visitor guest. An alias ties its previousId to its
   guest whichever kind previousId turns out to be: it merges the guests that have it as a
   user_id or anonymous_id, and records it as a ``previous_id`` that a later user_id or
   anonymous_id of the same value is found by.
3. Create the planned guests and insert their identities with ON CONFLICT DO NOTHING, then
   repeat from 1: a worker that lost a race now sees the winner's identity and merges into it.
   A round whose identities all went in (and that no alias touches) is final as it is.
4. Apply the merges (identities, events and sessions move; the loser keeps ``merged_into``) and
   update the surviving guests' profile from the batch (seen times, type, identify traits).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING

from django.db import connection
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from config.lib.db import arrays, locks_take, on_postgres, rows_insert_new, rows_update
from tracking.pipeline import hooks

from .models import Guest, GuestMerge, Identity, SegmentMembership, Session

if TYPE_CHECKING:
    from tracking.messages import Message

IdentityKey = tuple[int, str, str]  # (workspace_id, kind, value)

USER_ID = Identity.Kind.USER_ID
PREVIOUS_ID = Identity.Kind.PREVIOUS_ID
MAX_ROUNDS = 4
# The advisory locks of identities about to be inserted (config.lib.db.locks_take).
IDENTITY_LOCKS = 1
MAX_MERGE_HOPS = 16
# Strongest first: the anchor of a message is the guest of its strongest owned identifier.
_KIND_RANK = {Identity.Kind.USER_ID: 0, Identity.Kind.EMAIL: 1}
_ANONYMOUS_RANK = {
    Identity.Kind.DEVICE_ID: 3,
    Identity.Kind.BROWSER: 4,
    Identity.Kind.ANONYMOUS_ID: 5,
}
NAME_TRAITS = {
    "email": "email",
    "firstName": "first_name",
    "first_name": "first_name",
    "lastName": "last_name",
    "last_name": "last_name",
}


def kind_rank(kind: str) -> int:
    return _KIND_RANK.get(kind, _ANONYMOUS_RANK.get(kind, 2))


@dataclass(eq=False)
class Node:
    """A guest during one planning round: an existing (locked) guest or one to create."""

    guest: Guest
    user_ids: set[str]
    known: bool
    first_seen: datetime
    created: bool = False
    parent: Node | None = None

    def root(self) -> Node:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def rank(self) -> tuple:
        """Lower wins a merge: a user_id holder, then a customer, then the older guest."""
        return (
            not self.user_ids,
            not self.known,
            self.first_seen,
            self.created,
            str(self.guest.ref),
        )


@dataclass
class Merge:
    loser: Node
    winner: Node
    reason: str
    message_id: str


@dataclass
class Plan:
    anchors: list[Node] = field(default_factory=list)
    assigned: dict[IdentityKey, Node] = field(default_factory=dict)
    merges: list[Merge] = field(default_factory=list)
    new_nodes: list[Node] = field(default_factory=list)


@dataclass
class Locked:
    """What planning needs to know of a locked guest."""

    guest: Guest
    user_ids: frozenset[str]


def _ordered(messages: list[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (m.timestamp, m.message_id))


@dataclass(slots=True)
class Named:
    """A message with the identity keys it names, worked out once per batch rather than in
    every planning round."""

    message: Message
    keys: list[IdentityKey]
    alias_keys: list[IdentityKey]
    aliased_keys: list[IdentityKey]


def _named(messages: list[Message]) -> list[Named]:
    """The messages oldest first (the order a plan replays them in), with their keys."""
    named = []
    for message in _ordered(messages):
        keys = _keys(message)
        named.append(Named(message, keys, _alias_keys(message), sorted(_aliased_keys(keys))))
    return named


def _keys(message: Message) -> list[IdentityKey]:
    # Only an alias records a previous id: a door's free provider name cannot pose as one.
    pairs = sorted(
        {pair for pair in message.identifiers if pair[0] != PREVIOUS_ID},
        key=lambda pair: (kind_rank(pair[0]), pair),
    )
    return [(message.workspace_id, kind, value) for kind, value in pairs]


def _alias_keys(message: Message) -> list[IdentityKey]:
    """Every key an alias's previousId may be known by, its own ``previous_id`` last."""
    if message.type != "alias" or not message.previous_id:
        return []
    return [
        (message.workspace_id, kind, message.previous_id)
        for kind in (*Identity.PREVIOUS_ID_MATCHES, PREVIOUS_ID)
    ]


def _aliased_keys(keys: Iterable[IdentityKey]) -> set[IdentityKey]:
    """The ``previous_id`` keys an earlier alias may have recorded these ids under."""
    return {
        (workspace_id, PREVIOUS_ID, value)
        for workspace_id, kind, value in keys
        if kind in Identity.PREVIOUS_ID_MATCHES
    }


def identities_lookup(keys: Iterable[IdentityKey]) -> dict[IdentityKey, int]:
    """Guest ids of the identities that exist among ``keys``, in one query.

    On PostgreSQL the keys are joined as arrays, so the planner looks each one up in the
    unique index whatever the batch size (a long ``OR`` of ``IN`` lists tempts it to scan).
    """
    keys = list(keys)
    if not keys:
        return {}
    if on_postgres():
        table = Identity._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                SELECT i.workspace_id, i.kind, i.value, i.guest_id
                FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS k(workspace_id, kind, value)
                JOIN {table} i
                  ON i.workspace_id = k.workspace_id AND i.kind = k.kind AND i.value = k.value
                """,  # noqa: S608 - the table name is ours, values are parameters
                arrays(keys),
            )
            return {(ws, kind, value): guest_id for ws, kind, value, guest_id in cursor}
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


def guest_find(*, workspace_id: int, kind: str, value: str) -> Guest | None:
    """The guest an identity points at (following merges), or None."""
    owners = identities_lookup([(workspace_id, kind, value)])
    guest_id = owners.get((workspace_id, kind, value))
    if guest_id is None:
        return None
    guest = Guest.objects.get(pk=guest_id)
    for _ in range(MAX_MERGE_HOPS):
        if guest.merged_into_id is None:
            break
        guest = Guest.objects.get(pk=guest.merged_into_id)
    return guest


def guest_get_or_create(
    *, workspace_id: int, kind: str, value: str, door: str, now: datetime
) -> Guest:
    """The guest of one identity, made (as a visitor, race-free) when nobody has it yet.

    Goes through ``guests_resolve`` like any event, so a concurrent request naming the same
    identity ends up with the same guest.
    """
    from tracking.messages import Message

    message = Message(
        workspace_id=workspace_id,
        source_id=0,
        door=door,
        type="",
        message_id="",
        timestamp=now,
        received_at=now,
        identifiers=[(kind, value)],
    )
    resolution = guests_resolve(messages=[message])
    return next(g for g in resolution.guests if g.pk == message.guest_id)


def _guests_lock(guest_ids: set[int], locked: dict[int, Locked], *, held: list[int]) -> None:
    """Lock the guests not locked yet (in id order) and their merge survivors."""
    wanted = guest_ids - set(locked)
    for _ in range(MAX_MERGE_HOPS):
        if not wanted:
            return
        guests = list(Guest.objects.select_for_update().filter(pk__in=wanted).order_by("pk"))
        user_ids: dict[int, set[str]] = defaultdict(set)
        for guest_id, value in (
            Identity.objects.filter(guest_id__in=wanted, kind=USER_ID)
            .exclude(pk__in=held)
            .values_list("guest_id", "value")
        ):
            user_ids[guest_id].add(value)
        for guest in guests:
            locked[guest.pk] = Locked(guest=guest, user_ids=frozenset(user_ids[guest.pk]))
        # A guest another worker merged away since we looked: its survivor stands in for it.
        wanted = {g.merged_into_id for g in guests if g.merged_into_id} - set(locked)
    raise RuntimeError("guest merge chain too long")


def _compatible(a: Node, b: Node) -> bool:
    """Whether an implicit merge may join the two: not if both have user ids (identities are
    unique, so theirs differ). A guest an alias gave two user ids is still one person."""
    return not (a.user_ids and b.user_ids)


def _union(a: Node, b: Node, *, plan: Plan, reason: str, message_id: str, forced: bool) -> Node:
    """Merge the roots of ``a`` and ``b``; ``a`` wins when ``forced``, else the better rank."""
    a, b = a.root(), b.root()
    if a is b:
        return a
    winner = a if forced else min((a, b), key=Node.rank)
    loser = b if winner is a else a
    loser.parent = winner
    winner.user_ids |= loser.user_ids
    winner.known = winner.known or loser.known
    winner.first_seen = min(winner.first_seen, loser.first_seen)
    plan.merges.append(Merge(loser=loser, winner=winner, reason=reason, message_id=message_id))
    return winner


def _plan(
    named: list[Named],
    messages: list[Message],
    owners: dict[IdentityKey, int],
    locked: dict[int, Locked],
    created: set[int],
) -> Plan:
    """Decide each message's guest and the merges, without writing anything."""
    plan = Plan()
    nodes = {
        pk: Node(
            guest=item.guest,
            user_ids=set(item.user_ids),
            known=item.guest.guest_type == Guest.Type.CUSTOMER,
            first_seen=item.guest.first_seen,
            created=pk in created,
        )
        for pk, item in locked.items()
    }

    def survivor(guest_id: int) -> Node:
        for _ in range(MAX_MERGE_HOPS):
            next_id = nodes[guest_id].guest.merged_into_id
            if next_id is None or next_id not in nodes:
                break
            guest_id = next_id
        return nodes[guest_id]

    owner: dict[IdentityKey, Node] = {key: survivor(pk) for key, pk in owners.items()}
    anchors: dict[int, Node] = {}
    for item in named:
        message, keys = item.message, item.keys
        owned: list[Node] = []
        for key in keys:
            if key in owner and owner[key].root() not in owned:
                owned.append(owner[key].root())
        # The guests aliases tie this message to: those of its previousId (if an alias), and
        # those an earlier alias recorded one of its ids for.
        tied: list[Node] = []
        for key in (*item.alias_keys, *item.aliased_keys):
            if key in owner and owner[key].root() not in tied:
                tied.append(owner[key].root())
        user_key = next((key for key in keys if key[1] == USER_ID), None)
        if user_key is not None and user_key in owner:
            anchor = owner[user_key].root()
        else:
            # An alias ties the message to its guest whatever user ids that has (it is
            # explicit); otherwise a new user id only joins a guest that has none.
            candidates = tied or (
                owned if user_key is None else [n for n in owned if not n.user_ids]
            )
            if candidates:
                anchor = candidates[0]
            else:
                guest = Guest(
                    ref=uuid.uuid4(),
                    workspace_id=message.workspace_id,
                    first_seen=message.timestamp,
                    last_seen=message.timestamp,
                )
                anchor = Node(
                    guest=guest, user_ids=set(), known=False, first_seen=message.timestamp
                )
                anchor.created = True
                plan.new_nodes.append(anchor)
            if user_key is not None:
                anchor.user_ids.add(user_key[2])
        for node in owned:
            if node.root() is not anchor.root() and _compatible(anchor.root(), node.root()):
                anchor = _union(
                    anchor,
                    node,
                    plan=plan,
                    reason=GuestMerge.Reason.SHARED_IDENTIFIER,
                    message_id=message.message_id,
                    forced=False,
                )
        anchor = anchor.root()
        for node in tied:
            anchor = _union(
                anchor,
                node,
                plan=plan,
                reason=GuestMerge.Reason.ALIAS,
                message_id=message.message_id,
                forced=message.type == "alias",
            )
        # An alias records its previousId, to be found whichever kind it turns up as later.
        keys = keys + item.alias_keys[-1:]
        for key in keys:
            if key not in owner:
                owner[key] = anchor
                plan.assigned[key] = anchor
        if any(Identity.kind_is_known(key[1]) for key in keys if owner[key].root() is anchor):
            anchor.known = True
        anchors[id(message)] = anchor
    plan.anchors = [anchors[id(message)].root() for message in messages]
    return plan


@dataclass
class Resolution:
    """The surviving guests of a batch (locked, profiles up to date) and what was merged."""

    guests: list[Guest] = field(default_factory=list)
    merge_winners: set[int] = field(default_factory=set)
    # The time span the merged guests were seen in: their sessions may now touch others.
    merged_since: datetime | None = None
    merged_until: datetime | None = None


def guests_resolve(*, messages: list[Message]) -> Resolution:
    """Give every message its guest (``message.guest_id``), creating and merging guests."""
    if not messages:
        return Resolution()
    if any(not message.identifiers for message in messages):
        raise ValueError("every message needs at least one identifier")
    named = _named(messages)
    wanted = {key for item in named for key in (*item.keys, *item.alias_keys)}
    # An id nobody had may be one an alias named before it arrived. Only such ids are looked
    # up as previous ids (an id somebody has is on the guest of its previous id, if any), and
    # again in later rounds, where another worker may have recorded one since.
    aliased: set[IdentityKey] = set()
    locked: dict[int, Locked] = {}
    created: set[int] = set()
    held: list[int] = []
    for round_ in range(MAX_ROUNDS):
        owners = identities_lookup(wanted | aliased)
        if round_ == 0:
            # The ids nobody has yet are the ones this batch may insert: lock them first, all
            # at once in one global order, before any guest. Workers making the same new
            # visitor then queue on the lock rather than on each other's inserts, which they
            # would reach holding guest locks in different orders (a deadlock).
            locks_take(IDENTITY_LOCKS, [_lock_name(key) for key in wanted if key not in owners])
        unknown = _aliased_keys(key for key in wanted if key not in owners) - aliased
        if unknown:
            aliased |= unknown
            owners |= identities_lookup(unknown)
        _guests_lock(set(owners.values()), locked, held=held)
        plan = _plan(named, messages, owners, locked, created)
        if not plan.assigned:
            break
        new_guests = [node.guest for node in plan.new_nodes if node.root() is node]
        Guest.objects.bulk_create(new_guests)
        created |= {guest.pk for guest in new_guests}
        inserted = _identities_insert(plan)
        held += _previous_ids_hold(plan)
        if inserted == len(plan.assigned) and _settled(named, aliased, owners):
            # Another round would only find what this one wrote, and plan the same again.
            _unstored_forget(plan)
            break
    else:
        raise RuntimeError("identity resolution did not settle")
    if held:
        Identity.objects.filter(pk__in=held).delete()

    resolution = Resolution()
    for merge in plan.merges:
        if merge.loser.guest.pk not in created:
            resolution.merge_winners.add(merge.loser.root().guest.pk)
            loser = merge.loser.guest
            since, until = resolution.merged_since, resolution.merged_until
            resolution.merged_since = min(since, loser.first_seen) if since else loser.first_seen
            resolution.merged_until = max(until, loser.last_seen) if until else loser.last_seen
    _merges_apply(plan.merges, created=created)
    survivors: dict[int, Node] = {}
    for message, anchor in zip(messages, plan.anchors, strict=True):
        message.guest_id = anchor.guest.pk
        survivors[anchor.guest.pk] = anchor
    # Guests made in an earlier round whose identities all went to another worker's guests.
    merged_away = {merge.loser.guest.pk for merge in plan.merges}
    unused = created - set(survivors) - merged_away
    if unused:
        Guest.objects.filter(pk__in=unused).exclude(
            pk__in=Identity.objects.filter(guest_id__in=unused).values("guest_id")
        ).delete()
    resolution.guests = _profiles_update([item.message for item in named], survivors)
    return resolution


def _identities_insert(plan: Plan) -> int:
    """Insert the identities the plan gives out, in key order; returns how many went in (the
    rest another worker has)."""
    now = timezone.now()
    rows = [
        (*key, node.root().guest.pk, now)
        for key, node in sorted(plan.assigned.items(), key=lambda item: item[0])
    ]
    return len(
        rows_insert_new(
            Identity._meta.db_table,
            ["workspace_id", "kind", "value", "guest_id", "created_at"],
            ["bigint", "text", "text", "bigint", "timestamptz"],
            rows,
            conflict="workspace_id, kind, value",
            returning="id",
        )
    )


def _settled(named: list[Named], aliased: set[IdentityKey], owners: dict[IdentityKey, int]) -> bool:
    """Whether a round whose identities all went in is final, without planning again.

    Every identity it gave out is this transaction's, and the guests of the others are
    locked, so the next round would look up the same owners and plan the same, but for an
    alias: one in the batch holds ids until commit (``_previous_ids_hold``), and one another
    worker committed since the lookup may have recorded a previous id of the batch's new ids.
    """
    if any(item.alias_keys for item in named):
        return False
    if not aliased:
        return True
    return all(owners.get(key) == guest_id for key, guest_id in identities_lookup(aliased).items())


def _unstored_forget(plan: Plan) -> None:
    """Drop the merges of the guests the plan made and merged at once: they were never stored,
    so there is nothing of theirs to move (another round would not know them at all)."""
    unstored = {id(node) for node in plan.new_nodes if node.root() is not node}
    plan.merges = [merge for merge in plan.merges if id(merge.loser) not in unstored]


def _lock_name(key: IdentityKey) -> str:
    workspace_id, kind, value = key
    return f"identity:{workspace_id}:{kind}:{value}"


def _previous_ids_hold(plan: Plan) -> list[int]:
    """Hold the user_id and anonymous_id keys of each previous id the round recorded, on the
    alias's guest; the caller deletes the rows (whose ids this returns) before commit.

    Another worker may be storing that id's first event at this very moment, each unseen by
    the other: a previous_id and a user_id of one value never collide, but two inserts of one
    key do, and the second waits for the first to commit and then sees it. A row deleted by a
    transaction still open keeps others waiting (the delete could yet roll back), so the hold
    lasts until commit. SQLite runs one writer at a time: there is nothing to hold there.
    """
    if not on_postgres():
        return []
    rows = sorted(
        (workspace_id, kind, value, node.root().guest.pk)
        for (workspace_id, recorded, value), node in plan.assigned.items()
        if recorded == PREVIOUS_ID
        for kind in Identity.PREVIOUS_ID_MATCHES
        if (workspace_id, kind, value) not in plan.assigned
    )
    if not rows:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Identity._meta.db_table} (workspace_id, kind, value, guest_id, created_at)
            SELECT k.workspace_id, k.kind, k.value, k.guest_id, now()
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[])
              AS k(workspace_id, kind, value, guest_id)
            ON CONFLICT DO NOTHING
            RETURNING id
            """,  # noqa: S608 - the table name is ours, values are parameters
            arrays(rows),
        )
        return [row[0] for row in cursor]


def _merges_apply(merges: list[Merge], *, created: set[int]) -> None:
    """Move everything of each merged guest to its survivor, in a few bulk statements."""
    if not merges:
        return
    from tracking.models import Event

    final = {merge.loser.guest.pk: merge.loser.root().guest.pk for merge in merges}
    losers = list(final)

    def retarget(field_name: str) -> Case:
        return Case(
            *[When(**{field_name: loser}, then=Value(winner)) for loser, winner in final.items()]
        )

    Identity.objects.filter(guest_id__in=losers).update(guest_id=retarget("guest_id"))
    _memberships_move(final)
    # What the apps above profiles keep per guest follows too (experiments' assignments).
    for follow in hooks("GUEST_MERGE_FOLLOWERS"):
        follow(final=final)
    Event.objects.filter(guest_id__in=losers).update(guest_id=retarget("guest_id"))
    Session.objects.filter(guest_id__in=losers).update(guest_id=retarget("guest_id"))
    GuestMerge.objects.filter(guest_id__in=losers).update(guest_id=retarget("guest_id"))
    Guest.objects.filter(merged_into_id__in=losers).update(
        merged_into_id=retarget("merged_into_id")
    )
    kept = []
    for merge in merges:
        loser, winner = merge.loser.guest, merge.loser.root().guest
        _profile_absorb(winner, loser)
        if loser.pk not in created:
            loser.merged_into_id = winner.pk
            kept.append(loser)
    Guest.objects.bulk_update(kept, ["merged_into_id"])
    GuestMerge.objects.bulk_create(
        [
            GuestMerge(
                workspace_id=merge.loser.guest.workspace_id,
                guest_id=final[merge.loser.guest.pk],
                merged_ref=merge.loser.guest.ref,
                reason=merge.reason,
                message_id=merge.message_id,
            )
            for merge in merges
            if merge.loser.guest.pk not in created
        ]
    )
    # A guest made and merged within this batch was never seen by anyone: it just goes.
    fresh = [pk for pk in losers if pk in created]
    if fresh:
        Guest.objects.filter(pk__in=fresh).delete()


def _memberships_move(final: dict[int, int]) -> None:
    """Segment memberships follow the merge; a segment keeps one open stay per survivor."""
    winners = set(final.values())
    open_rows = SegmentMembership.objects.filter(
        guest_id__in=[*final, *winners], exited_at__isnull=True
    ).values_list("pk", "segment_id", "guest_id", "entered_at")
    # The survivor's own stay wins, else the earliest one.
    keep: dict[tuple[int, int], int] = {}
    for pk, segment_id, guest_id, _ in sorted(
        open_rows, key=lambda row: (row[2] not in winners, row[3], row[0])
    ):
        keep.setdefault((segment_id, final.get(guest_id, guest_id)), pk)
    kept = set(keep.values())
    surplus = [row[0] for row in open_rows if row[0] not in kept]
    if surplus:
        SegmentMembership.objects.filter(pk__in=surplus).update(exited_at=timezone.now())
    SegmentMembership.objects.filter(guest_id__in=list(final)).update(
        guest_id=Case(
            *[When(guest_id=loser, then=Value(winner)) for loser, winner in final.items()]
        )
    )


def _profile_absorb(winner: Guest, loser: Guest) -> None:
    """The survivor keeps its own profile and fills its gaps from the merged guest."""
    for name in ("email", "first_name", "last_name"):
        if not getattr(winner, name) and getattr(loser, name):
            setattr(winner, name, getattr(loser, name))
    winner.traits = {**(loser.traits or {}), **(winner.traits or {})}
    winner.first_seen = min(winner.first_seen, loser.first_seen)
    winner.last_seen = max(winner.last_seen, loser.last_seen)


def _profiles_update(ordered: list[Message], survivors: dict[int, Node]) -> list[Guest]:
    """Seen times, type and identify traits of the batch (``ordered`` oldest first), written in
    one bulk UPDATE."""
    for message in ordered:
        guest = survivors[message.guest_id].guest
        guest.first_seen = min(guest.first_seen, message.timestamp)
        guest.last_seen = max(guest.last_seen, message.timestamp)
        if message.updates_profile and message.traits:
            traits_apply(guest, message.traits)
    guests = []
    for node in survivors.values():
        if node.known or node.user_ids:
            node.guest.guest_type = Guest.Type.CUSTOMER
        guests.append(node.guest)
    guests.sort(key=lambda g: g.pk)
    rows_update(
        guests,
        ["first_seen", "last_seen", "guest_type", "email", "first_name", "last_name", "traits"],
    )
    return guests


def traits_apply(guest: Guest, traits: dict) -> None:
    """identify traits: email and names become columns, everything else a trait."""
    rest = dict(traits)
    for trait, column in NAME_TRAITS.items():
        value = rest.pop(trait, None)
        if isinstance(value, str) and value.strip():
            setattr(
                guest, column, value.strip()[:150] if column != "email" else value.strip()[:254]
            )
    name = rest.get("name")
    if isinstance(name, str) and not guest.first_name and " " in name.strip():
        guest.first_name, _, guest.last_name = name.strip().partition(" ")
    guest.traits = {**(guest.traits or {}), **rest}
