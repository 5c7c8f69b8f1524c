"""Storing new messages: the pipeline's run over a batch, and tracking's own steps (IP
anonymisation, dedup keys, the events COPY)."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from operator import attrgetter

import orjson
from django.db import connection, transaction
from django.utils import timezone

from config.lib.db import (
    COPY_FROM_ROWS,
    Upsert,
    copy_types,
    counts_upsert,
    counts_upsert_all,
    ids_reserve,
    inet_value,
    keys_upsert_returning,
    on_postgres,
    rows_copy,
    sql_greatest,
    sql_json_list_merge,
    sql_least,
)

from .messages import Message, ip_anonymize
from .models import (
    CatalogueEvent,
    CatalogueKey,
    DedupKey,
    Event,
    EventRollup,
    EventTypeRollup,
    FailedEventRollup,
    Workspace,
)
from .pipeline import Batch, batch_run

logger = logging.getLogger(__name__)


@dataclass
class Stored:
    event_ids: list[int]
    duplicates: int = 0
    suppressed: int = 0


def events_store(
    *,
    messages: list[Message],
    dedup_windows: dict,
    session_timeouts: dict,
    keys_apart: bool = False,
) -> Stored:
    """Run the processing pipeline (``FOOTPRINT["PIPELINE"]``) over new messages: drop erased
    guests' and duplicate messages, resolve guests and sessions, insert events.

    Runs inside the caller's transaction. ``dedup_windows`` maps source id to that source's
    dedup window, ``session_timeouts`` workspace id to its session timeout. ``keys_apart``:
    see ``dedup_claim``.
    """
    batch = batch_run(
        Batch(
            messages=messages,
            dedup_windows=dedup_windows,
            session_timeouts=session_timeouts,
            keys_apart=keys_apart,
        )
    )
    return Stored(
        event_ids=batch.event_ids, duplicates=batch.duplicates, suppressed=batch.suppressed
    )


# Every column of an event is the message attribute of the same name.
EVENT_FIELDS = [f for f in Event._meta.concrete_fields if not f.primary_key]
# One attrgetter reads every column's value off a message at C speed.
_event_attributes = attrgetter(*(f.attname for f in EVENT_FIELDS))
_EVENT_IP = [f.attname for f in EVENT_FIELDS].index("ip")


def event_values(message: Message) -> list:
    """A message's event columns, as a binary ``rows_copy`` takes them."""
    values = list(_event_attributes(message))
    values[_EVENT_IP] = inet_value(values[_EVENT_IP])
    return values


def events_insert(messages: list[Message]) -> list[int]:
    """Insert one event per message; returns their ids, in order.

    On PostgreSQL the ids are drawn from the sequence in one query and the rows go in with one
    binary ``COPY``, straight from the messages: several times faster than a multi-row INSERT
    of model instances, where building the instances and quoting every value client-side
    dominate, and about half the client's time of a text COPY (no JSON text to build).
    """
    if not on_postgres() or len(messages) < COPY_FROM_ROWS:
        events = Event.objects.bulk_create(
            [Event(**{f.attname: getattr(m, f.attname) for f in EVENT_FIELDS}) for m in messages],
            batch_size=1000,
        )
        return [event.pk for event in events]
    table = Event._meta.db_table
    columns = ", ".join(connection.ops.quote_name(f.column) for f in EVENT_FIELDS)
    ids = ids_reserve(table, len(messages))
    rows_copy(
        table,
        f"id, {columns}",
        (
            [event_id, *event_values(message)]
            for event_id, message in zip(ids, messages, strict=True)
        ),
        types=["bigint", *copy_types(EVENT_FIELDS)],
    )
    return ids


def messages_ip_anonymize(*, messages: list[Message]) -> None:
    """Zero the host part of every address (the typed ip and ``context.ip``) of the messages
    whose workspace asks for it. Every door's messages pass here before anything is stored."""
    with_ip = {m.workspace_id for m in messages if m.ip or m.context.get("ip")}
    if not with_ip:
        return
    anonymizing = set(
        Workspace.objects.filter(pk__in=with_ip, anonymize_ip=True).values_list("pk", flat=True)
    )
    for message in messages:
        if message.workspace_id not in anonymizing:
            continue
        message.ip = ip_anonymize(message.ip)
        if "ip" in message.context:
            raw = message.context["ip"]
            message.context = {
                **message.context,
                "ip": ip_anonymize(raw) if isinstance(raw, str) else None,
            }


def dedup_claim(
    *, messages: list[Message], dedup_windows: dict, apart: bool = False
) -> list[Message]:
    """The messages whose messageId is new in their workspace, or whose earlier key expired.

    The first message with a given id wins, within the batch and across batches; the window is
    counted from the time the first one was received (as seed 002 says), not from its timestamp.
    Keys are claimed with one ``INSERT … ON CONFLICT DO UPDATE … WHERE expired RETURNING``, so
    concurrent workers cannot both win the same id.

    Each key remembers the inbox request of its message, and a request always wins the keys it
    claimed before. That lets the drain claim them ``apart``: on a connection of their own,
    committed at once, instead of in the batch's transaction, where another drain holding the
    same id (a client's retry is usually processed next to the original) would wait until
    that whole transaction ends. If the batch then rolls back or its worker dies, its requests
    stay pending, and processed again they win the same keys; a request that fails for good
    gives them back (``dedup_keys_release``).
    """
    # The copies of each id, the first one of each inbox request: the first copy wins, unless
    # the key is a later copy's request's already (it claimed it and was rolled back).
    copies: dict[tuple[int, str], list[Message]] = {}
    for message in messages:
        group = copies.setdefault((message.workspace_id, message.message_id), [])
        if not group or all(m.inbox_id != message.inbox_id for m in group):
            group.append(message)
    if not copies:
        return []
    table = DedupKey._meta.db_table
    chosen: dict[tuple[int, str], Message] = {}
    tried = dict.fromkeys(copies, 0)
    while tried:
        rows = [
            (
                ws,
                mid,
                m.received_at,
                m.received_at + (m.dedup_window or dedup_windows[m.source_id]),
                m.inbox_id,
            )
            # In key order, so that drains inserting overlapping keys wait for each other
            # rather than deadlock.
            for (ws, mid), m in sorted(
                ((key, copies[key][index]) for key, index in tried.items()),
                key=lambda item: item[0],
            )
        ]
        won = set(
            keys_upsert_returning(
                table,
                ["workspace_id", "message_id", "received_at", "expires_at", "inbox_id"],
                ["bigint", "text", "timestamptz", "timestamptz", "bigint"],
                rows,
                conflict="workspace_id, message_id",
                assign="received_at = excluded.received_at, expires_at = excluded.expires_at, "
                "inbox_id = excluded.inbox_id",
                where=f"{table}.expires_at <= excluded.received_at "
                f"OR {table}.inbox_id = excluded.inbox_id",
                returning="workspace_id, message_id",
                apart=apart,
            )
        )
        for key, index in list(tried.items()):
            if key in won:
                chosen[key] = copies[key][index]
            if key in won or index + 1 == len(copies[key]):
                del tried[key]
            else:
                tried[key] = index + 1
    return [chosen[key] for key in copies if key in chosen]


def dedup_keys_release(*, inbox_id: int, keys: list[tuple[int, str]]) -> int:
    """Forget the dedup keys (workspace id, messageId) that the inbox request claimed: it failed
    for good, so its messages were never stored and a repeat of one is not a duplicate."""
    if not keys:
        return 0
    by_workspace: dict[int, list[str]] = defaultdict(list)
    for workspace_id, message_id in keys:
        by_workspace[workspace_id].append(message_id)
    deleted = 0
    for workspace_id, message_ids in by_workspace.items():
        deleted += DedupKey.objects.filter(
            workspace_id=workspace_id, message_id__in=message_ids, inbox_id=inbox_id
        ).delete()[0]
    return deleted


def dedup_keys_purge(*, now: datetime | None = None) -> int:
    """Forget dedup keys whose window has ended."""
    deleted, _ = DedupKey.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


# --- rollups and the catalogue ----------------------------------------------------------------

# Trait keys whose values are the person (never kept as examples), and the longest example.
PERSONAL_KEYS = frozenset(
    {
        "email",
        "firstName",
        "first_name",
        "lastName",
        "last_name",
        "name",
        "phone",
        "address",
        "street",
        "birthday",
        "ip",
        "username",
        "userId",
        "user_id",
    }
)
EXAMPLE_MAX = 60


def _example(value) -> str | None:
    """A value as a short example, or None: nested values, long text and anything with an
    ``@`` (an address) are not examples."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value.strip()
        return text if text and len(text) <= EXAMPLE_MAX and "@" not in text else None
    if isinstance(value, int | float):
        return str(value)
    return None


def _hour(moment: datetime) -> datetime:
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


# Messages of one event name (or identify-like messages) searched for a key's examples.
EXAMPLE_SCAN = 50


def rollups_count(messages: list[Message]) -> None:
    """Add the stored messages to the hourly rollups and the event and trait catalogue.

    Counted in Python first, then written with one ``INSERT … ON CONFLICT DO UPDATE SET n =
    n + excluded.n`` per table, rows sorted by key so that concurrent drains wait rather than
    deadlock. Runs in the transaction that stores the events: the counts and the events
    commit or roll back together. A key's first and last seen are those of the batch's events
    of its name (a batch spans seconds).
    """
    if not messages:
        return
    # Hours as whole hours since the epoch while counting: cheaper to hash than datetimes.
    counted = Counter(
        (m.workspace_id, int(m.timestamp.timestamp() // 3600), m.source_id, m.type, m.name)
        for m in messages
    )
    hours = {
        (ws, datetime.fromtimestamp(hour * 3600, UTC), source, type_[:64], name[:255]): n
        for (ws, hour, source, type_, name), n in counted.items()
    }
    groups: dict[tuple, list[Message]] = defaultdict(list)
    profiles: dict[int, list[Message]] = defaultdict(list)
    for m in messages:
        if m.name:
            groups[(m.workspace_id, m.name[:255])].append(m)
        if m.updates_profile and m.traits:
            profiles[m.workspace_id].append(m)
    names = []
    keys = []
    for (workspace_id, name), group in groups.items():
        first = min(m.timestamp for m in group)
        last = max(m.timestamp for m in group)
        names.append((workspace_id, name, len(group), first, last))
        with_properties = [m for m in group if m.properties]
        keys += _keys_count(workspace_id, "property", name, with_properties, "properties")
    for workspace_id, group in profiles.items():
        keys += _keys_count(workspace_id, "trait", "", group, "traits", personal=True)
    by_type: Counter = Counter()
    for (ws, hour, source, type_, _name), n in hours.items():
        by_type[(ws, hour, source, type_)] += n
    rollups = EventRollup._meta.db_table
    type_rollups = EventTypeRollup._meta.db_table
    events = CatalogueEvent._meta.db_table
    keys_table = CatalogueKey._meta.db_table
    counts_upsert_all(
        [
            Upsert(
                rollups,
                ["workspace_id", "hour", "source_id", "type", "name", "n"],
                ["bigint", "timestamptz", "bigint", "text", "text", "bigint"],
                [(*key, n) for key, n in sorted(hours.items(), key=lambda item: item[0])],
                conflict="workspace_id, hour, source_id, type, name",
                assign=f"n = {rollups}.n + excluded.n",
            ),
            Upsert(
                type_rollups,
                ["workspace_id", "hour", "source_id", "type", "n"],
                ["bigint", "timestamptz", "bigint", "text", "bigint"],
                [(*key, n) for key, n in sorted(by_type.items(), key=lambda item: item[0])],
                conflict="workspace_id, hour, source_id, type",
                assign=f"n = {type_rollups}.n + excluded.n",
            ),
            Upsert(
                events,
                ["workspace_id", "name", "count", "first_seen", "last_seen"],
                ["bigint", "text", "bigint", "timestamptz", "timestamptz"],
                sorted(names, key=lambda row: row[:2]),
                conflict="workspace_id, name",
                assign=_seen_assign(events),
            ),
            Upsert(
                keys_table,
                [
                    "workspace_id",
                    "kind",
                    "event_name",
                    "key",
                    "count",
                    "first_seen",
                    "last_seen",
                    "examples",
                ],
                ["bigint", "text", "text", "text", "bigint", "timestamptz", "timestamptz", "jsonb"],
                sorted(keys, key=lambda row: row[:4]),
                conflict="workspace_id, kind, event_name, key",
                assign=_seen_assign(keys_table)
                + ", examples = "
                + sql_json_list_merge(
                    f"{keys_table}.examples", "excluded.examples", limit=CatalogueKey.EXAMPLES
                ),
            ),
        ]
    )


# Events of a batch within this span give their keys the batch's first and last times;
# wider batches (a backfill) time each key by its own events.
KEY_TIMES_SPAN = timedelta(minutes=1)


def _keys_count(
    workspace_id: int,
    kind: str,
    event_name: str,
    group: list,
    attribute: str,
    *,
    personal: bool = False,
) -> list[tuple]:
    """One catalogue row per key of the ``attribute`` dicts of ``group`` (messages, or
    ``(timestamp, dict)`` pairs when ``attribute`` is None): how many carry it, when first
    and last, and up to five examples from the first ``EXAMPLE_SCAN`` of them."""
    pairs = group if attribute is None else [(m.timestamp, getattr(m, attribute)) for m in group]
    if not pairs:
        return []
    dicts = [values for _, values in pairs]
    counts = Counter(chain.from_iterable(dicts))
    first = min(ts for ts, _ in pairs)
    last = max(ts for ts, _ in pairs)
    firsts: dict[str, datetime] = {}
    lasts: dict[str, datetime] = {}
    if last - first > KEY_TIMES_SPAN:
        for ts, values in pairs:
            for key in values:
                if key not in firsts or ts < firsts[key]:
                    firsts[key] = ts
                if key not in lasts or ts > lasts[key]:
                    lasts[key] = ts
    limit = CatalogueKey.EXAMPLES
    scanned = dicts[:EXAMPLE_SCAN]
    rows = []
    for key, count in counts.items():
        examples: list[str] = []
        if not (personal and key in PERSONAL_KEYS):
            for values in scanned:
                if key in values:
                    example = _example(values[key])
                    if example is not None and example not in examples:
                        examples.append(example)
                        if len(examples) == limit:
                            break
        rows.append(
            (
                workspace_id,
                kind,
                event_name,
                key[:255],
                count,
                firsts.get(key, first),
                lasts.get(key, last),
                orjson.dumps(examples).decode(),
            )
        )
    return rows


def _seen_assign(table: str) -> str:
    return (
        f"count = {table}.count + excluded.count, "
        f"first_seen = {sql_least(f'{table}.first_seen', 'excluded.first_seen')}, "
        f"last_seen = {sql_greatest(f'{table}.last_seen', 'excluded.last_seen')}"
    )


def failed_rollups_count(failed) -> None:
    """Add refused messages (``FailedEvent`` rows being recorded) to the hourly failure counts."""
    counts: dict[tuple, int] = {}
    for item in failed:
        key = (item.workspace_id, _hour(item.received_at), item.source_id, item.code[:64])
        counts[key] = counts.get(key, 0) + 1
    table = FailedEventRollup._meta.db_table
    counts_upsert(
        table,
        ["workspace_id", "hour", "source_id", "code", "n"],
        ["bigint", "timestamptz", "bigint", "text", "bigint"],
        [(*key, n) for key, n in sorted(counts.items(), key=lambda item: item[0])],
        conflict="workspace_id, hour, source_id, code",
        assign=f"n = {table}.n + excluded.n",
    )


# Events the examples of a rebuilt catalogue are drawn from, newest first, per workspace.
REBUILD_EXAMPLE_EVENTS = 20_000


def rollups_rebuild(*, workspace_ids: list[int]) -> None:
    """Recount the hourly rollups and the catalogue of the workspaces from their stored events
    (``manage.py rollups_rebuild``): for installations that had events before the pipeline
    kept them, or after events were loaded by hand. Failure counts come from the failed events
    still kept."""
    from .models import FailedEvent

    pg = on_postgres()
    events = Event._meta.db_table
    marks = ", ".join(["%s"] * len(workspace_ids))
    hour = (
        "date_trunc('hour', {0} AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if pg
        else "strftime('%%Y-%%m-%%d %%H:00:00', {0})"
    )
    keys_of = "jsonb_object_keys({0}) AS j(key)" if pg else "json_each({0}) AS j"
    is_object = "jsonb_typeof({0}) = 'object'" if pg else "json_type({0}) = 'object'"
    tables = [EventRollup, EventTypeRollup, FailedEventRollup, CatalogueEvent, CatalogueKey]
    with transaction.atomic(), connection.cursor() as cursor:
        for model in tables:
            cursor.execute(
                f"DELETE FROM {model._meta.db_table} WHERE workspace_id IN ({marks})",  # noqa: S608
                workspace_ids,
            )
        cursor.execute(
            f"INSERT INTO {EventRollup._meta.db_table} "  # noqa: S608
            "(workspace_id, hour, source_id, type, name, n) "
            f"SELECT workspace_id, {hour.format('timestamp')}, source_id, type, name, count(*) "
            f"FROM {events} WHERE workspace_id IN ({marks}) "
            "GROUP BY workspace_id, 2, source_id, type, name",
            workspace_ids,
        )
        cursor.execute(
            f"INSERT INTO {EventTypeRollup._meta.db_table} "  # noqa: S608
            "(workspace_id, hour, source_id, type, n) "
            "SELECT workspace_id, hour, source_id, type, sum(n) "
            f"FROM {EventRollup._meta.db_table} WHERE workspace_id IN ({marks}) "
            "GROUP BY workspace_id, hour, source_id, type",
            workspace_ids,
        )
        cursor.execute(
            f"INSERT INTO {FailedEventRollup._meta.db_table} "  # noqa: S608
            "(workspace_id, hour, source_id, code, n) "
            f"SELECT workspace_id, {hour.format('received_at')}, source_id, code, count(*) "
            f"FROM {FailedEvent._meta.db_table} WHERE workspace_id IN ({marks}) "
            "GROUP BY workspace_id, 2, source_id, code",
            workspace_ids,
        )
        cursor.execute(
            f"INSERT INTO {CatalogueEvent._meta.db_table} "  # noqa: S608
            "(workspace_id, name, count, first_seen, last_seen) "
            "SELECT workspace_id, name, count(*), min(timestamp), max(timestamp) "
            f"FROM {events} WHERE workspace_id IN ({marks}) AND name <> '' "
            "GROUP BY workspace_id, name",
            workspace_ids,
        )
        for kind, column, event_name, where in (
            ("property", "properties", "e.name", "e.name <> ''"),
            ("trait", "traits", "''", "e.type IN ('identify', 'IDENTITY')"),
        ):
            cursor.execute(
                f"INSERT INTO {CatalogueKey._meta.db_table} "  # noqa: S608
                "(workspace_id, kind, event_name, key, count, first_seen, last_seen, examples) "
                f"SELECT e.workspace_id, %s, {event_name}, substr(j.key, 1, 255), count(*), "
                "min(e.timestamp), max(e.timestamp), '[]' "
                f"FROM {events} e, {keys_of.format('e.' + column)} "
                f"WHERE e.workspace_id IN ({marks}) AND {where} "
                f"AND {is_object.format('e.' + column)} "
                "GROUP BY e.workspace_id, 3, 4",
                [kind, *workspace_ids],
            )
    _examples_rebuild(workspace_ids)


def _examples_rebuild(workspace_ids: list[int]) -> None:
    for workspace_id in workspace_ids:
        recent = (
            Event.objects.filter(workspace_id=workspace_id)
            .order_by("-timestamp")
            .values_list("timestamp", "type", "name", "properties", "traits")[
                :REBUILD_EXAMPLE_EVENTS
            ]
        )
        by_name: dict[str, list[tuple]] = defaultdict(list)
        traits: list[tuple] = []
        for ts, type_, name, properties, trait_values in recent.iterator(chunk_size=2000):
            if name and isinstance(properties, dict) and properties:
                by_name[name].append((ts, properties))
            if type_ in ("identify", "IDENTITY") and isinstance(trait_values, dict):
                traits.append((ts, trait_values))
        found = {}
        for name, pairs in by_name.items():
            for row in _keys_count(workspace_id, "property", name, pairs[::-1], None):
                found[row[1:4]] = orjson.loads(row[7])
        for row in _keys_count(workspace_id, "trait", "", traits[::-1], None, personal=True):
            found[row[1:4]] = orjson.loads(row[7])
        changed = []
        for row in CatalogueKey.objects.filter(workspace_id=workspace_id):
            examples = found.get((row.kind, row.event_name, row.key))
            if examples:
                row.examples = examples
                changed.append(row)
        CatalogueKey.objects.bulk_update(changed, ["examples"], batch_size=500)


def example_values(dicts) -> set[str]:
    """The values of ``dicts`` (properties or traits) as the catalogue keeps examples."""
    found = set()
    for values in dicts:
        if isinstance(values, dict):
            for value in values.values():
                example = _example(value)
                if example is not None:
                    found.add(example)
    return found


def catalogue_examples_forget(*, workspace_id: int, values: set[str]) -> int:
    """Take ``values`` (an erased guest's) out of the workspace's catalogue examples; returns
    how many keys changed."""
    if not values:
        return 0
    changed = []
    for key in CatalogueKey.objects.filter(workspace_id=workspace_id).exclude(examples=[]):
        kept = [example for example in key.examples if example not in values]
        if kept != key.examples:
            key.examples = kept
            changed.append(key)
    CatalogueKey.objects.bulk_update(changed, ["examples"], batch_size=500)
    return len(changed)
