"""Running an experience for a guest (``/v2/callFlows``) and the exposure it leaves; changing an
experience under the rules every caller (API, admin, actions) shares."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, OuterRef, Value, When
from django.db.models.functions import Concat
from django.utils import timezone

from config.lib.db import on_postgres, row_select
from profiles.identity import guest_get_or_create
from profiles.models import Guest, Identity, SegmentMembership, Session
from profiles.rules import RuleError, property_condition_validate
from tracking import services as tracking_services
from tracking.doors.personalize import channel_of, exposure_meta, identifier_of, point_of_sale_of
from tracking.errors import IngestError
from tracking.models import Door, InboxRequest

from .assignment import takes_part, variant_pick
from .flows import (
    FlowDefinition,
    flow_definitions_forget_soon,
)
from .models import Assignment, Experience, FlowExecution, Metric, Variant

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


@dataclass
class Decision:
    experience: Experience
    variant: Variant | None
    guest: Guest | None
    exposed: bool
    execution_ref: str | None = None
    session_ref: str | None = None
    reason: str = ""


def flow_call(*, definition: FlowDefinition, body: dict, raw: bytes) -> Decision:
    """Decide the variant for the guest the request names and, if exposed, leave the exposure.

    A known guest with an assignment and a current visit costs one statement on PostgreSQL:
    it reads the guest, their assignment, their current visit and the segments that matter,
    and writes the exposure as one inbox row, committed before the answer, which the workers
    store as the TRACKING event and the flow execution with the refs answered
    (``tracking.doors.personalize``). Anyone else costs the read and then the row; a new guest
    and a first assignment are written here, so that every process sees them at once. ``raw``
    is the request body as received.
    """
    started = time.perf_counter()
    now = timezone.now()
    kind, value = identifier_of(body)
    experience = definition.experience
    default = definition.default
    channel, point_of_sale = channel_of(body), point_of_sale_of(body)
    if "\x00" in f"{value}{point_of_sale}{channel}":
        # PostgreSQL stores no U+0000 in text or jsonb: refused, as every door refuses it.
        raise IngestError("invalid_field", "the request holds U+0000, which cannot be stored")
    running = _running(experience, now)
    exposure = None
    if running and definition.variants and on_postgres():
        exposure = _Exposure(definition, raw=raw, now=now, started=started)
    facts = _guest_facts(definition, kind, value, channel, now, exposure=exposure)
    guest = facts.guest if facts else None
    execution_ref = event_ref = None
    if exposure is not None:
        if facts is not None and facts.exposure_id is not None:
            tracking_services.inbox_accepted(door=Door.PERSONALIZE)
            return Decision(
                experience,
                definition.variants_by_id[facts.assigned_id],
                guest,
                exposed=True,
                execution_ref=exposure.execution_ref,
                session_ref=facts.session_ref,
            )
        execution_ref, event_ref = exposure.execution_ref, exposure.event_ref

    if not running:
        return Decision(experience, default, guest, exposed=False, reason=experience.status)
    if not definition.variants:
        return Decision(experience, None, guest, exposed=False, reason="no variants")

    if facts is None:
        with transaction.atomic():
            guest = guest_get_or_create(
                workspace_id=definition.workspace.pk,
                kind=kind,
                value=value,
                door=Door.PERSONALIZE,
                now=now,
            )
        facts = GuestFacts(guest=guest)
    eligible, reason = _eligible(definition, facts)
    if not eligible:
        return Decision(experience, default, guest, exposed=False, reason=reason)
    variant = _assignment(definition, guest, facts.assigned_id)
    if variant is None:
        return Decision(experience, default, guest, exposed=False, reason="not allocated")
    execution_ref = execution_ref or str(uuid.uuid4())
    session_ref, new_session = facts.session_ref, False
    if session_ref is None:
        session_ref, new_session = _session_ref_new(guest, channel, facts.last_session_id), True
    flow = _flow_execution(
        definition,
        variant,
        ref=execution_ref,
        now=now,
        guest_ref=str(guest.ref),
        elapsed_ms=int((time.perf_counter() - started) * 1000),
    )
    meta = exposure_meta(
        flow=flow,
        event_ref=event_ref or str(uuid.uuid4()),
        variant_name=variant.name,
        new_session_ref=session_ref if new_session else None,
    )
    tracking_services.inbox_accept(
        source=definition.source,
        door=Door.PERSONALIZE,
        body=raw,
        meta=meta,
        ip=None,
        received_at=now,
    )
    return Decision(
        experience,
        variant,
        guest,
        exposed=True,
        execution_ref=execution_ref,
        session_ref=session_ref,
    )


def _flow_execution(
    definition: FlowDefinition,
    variant: Variant,
    *,
    ref: str,
    now: datetime,
    guest_ref: str,
    elapsed_ms: int,
) -> dict:
    """The TRACKING event's ``flowExecution`` of one exposure."""
    experience = definition.experience
    return {
        "ref": ref,
        "occurredAt": int(now.timestamp() * 1000),
        "flowRef": str(experience.ref),
        "flowFriendlyId": experience.friendly_id,
        "flowVariantRef": str(variant.ref),
        "guestRef": guest_ref,
        "flowExecutionTimeMs": elapsed_ms,
        "status": FlowExecution.Status.SUCCESS,
    }


class _Exposure:
    """The exposure a call leaves if the guest read finds everything in place (PostgreSQL): the
    statement that reads the guest writes it too, so a repeat guest's decision is one round
    trip, committed on return in autocommit.

    Its inbox meta is made here for each variant the guest may hold; the statement takes the
    one of the guest's assignment and fills in the guest's ref and the time taken. It is
    written only when nothing else is left to decide: the guest holds one of the live
    variants, is eligible, and has a visit an event now joins (else the answer opens a new
    one, whose ref is made from what the read found: see ``_session_ref_new``).
    """

    __slots__ = ("execution_ref", "event_ref", "params")

    def __init__(self, definition: FlowDefinition, *, raw: bytes, now: datetime, started: float):
        self.execution_ref = str(uuid.uuid4())
        self.event_ref = str(uuid.uuid4())
        elapsed_ms = int((time.perf_counter() - started) * 1000)
        metas = {
            str(pk): exposure_meta(
                flow=_flow_execution(
                    definition,
                    variant,
                    ref=self.execution_ref,
                    now=now,
                    guest_ref="",
                    elapsed_ms=0,
                ),
                event_ref=self.event_ref,
                variant_name=variant.name,
                new_session_ref=None,
            )
            for pk, variant in definition.variants_by_id.items()
        }
        # In the order of the placeholders of the statement's second half (_GUEST_EXPOSE).
        self.params = [
            definition.source.pk,
            Door.PERSONALIZE,
            raw,
            elapsed_ms,
            now,
            InboxRequest.Status.PENDING,
            orjson.dumps(metas).decode(),
            not definition.targets,
        ]


@dataclass
class GuestFacts:
    """What deciding needs to know of a guest, read at once."""

    guest: Guest
    assigned_id: int | None = None
    # The guest's visit on the request's channel that an event now would join, if any.
    session_ref: str | None = None
    # The guest's latest visit on that channel, current or not.
    last_session_id: int | None = None
    in_target: bool = False
    in_exclusion: bool = False
    # The inbox row of the exposure the same statement wrote (see ``_Exposure``), if it did.
    exposure_id: int | None = None


_GUEST_FACTS_SQL: dict[tuple[int, int, bool], str] = {}
# The guest's columns the read takes, in the model's order, as ``Guest.from_db`` takes them.
_GUEST_COLUMNS = ("id", "ref", "workspace_id", "email", "first_name", "last_name", "traits")
_REF, _TRAITS = _GUEST_COLUMNS.index("ref"), _GUEST_COLUMNS.index("traits")


def _guest_facts_sql(targets: int, exclusions: int, *, expose: bool) -> str:
    """One statement: the guest owning an identifier, their assignment, their latest visit on
    a channel (and whether an event now still joins it) and their membership of the
    experience's target and exclusion segments. Every part is an indexed lookup. With
    ``expose`` (PostgreSQL) it also writes the exposure when nothing is left to decide
    (``_Exposure``), and its last column is the inbox row's id, else NULL."""
    key = (targets, exclusions, expose)
    sql = _GUEST_FACTS_SQL.get(key)
    if sql is not None:
        return sql

    def member_of(count: int) -> str:
        if not count:
            return "0"
        marks = ", ".join(["%s"] * count)
        return (
            f"CASE WHEN EXISTS (SELECT 1 FROM {SegmentMembership._meta.db_table} m "  # noqa: S608
            f"WHERE m.guest_id = g.id AND m.exited_at IS NULL AND m.segment_id IN ({marks})) "
            "THEN 1 ELSE 0 END"
        )

    sessions = Session._meta.db_table
    columns = ", ".join(f"g.{name}" for name in _GUEST_COLUMNS)
    sql = (
        f"SELECT {columns}, "  # noqa: S608
        f"(SELECT a.variant_id FROM {Assignment._meta.db_table} a "
        "WHERE a.experience_id = %s AND a.guest_id = g.id) AS assigned_id, "
        "s.id AS session_id, s.ref AS session_ref, "
        "CASE WHEN s.ended_at >= %s AND NOT s.force_closed THEN 1 ELSE 0 END AS visit_current, "
        f"{member_of(targets)} AS in_target, {member_of(exclusions)} AS in_exclusion "
        f"FROM {Identity._meta.db_table} i JOIN {Guest._meta.db_table} g ON g.id = i.guest_id "
        f"LEFT JOIN {sessions} s ON s.id = (SELECT s2.id FROM {sessions} s2 "
        "WHERE s2.guest_id = g.id AND s2.channel = %s AND s2.client_session_id = '' "
        "ORDER BY s2.ended_at DESC LIMIT 1) "
        "WHERE i.workspace_id = %s AND i.kind = %s AND i.value = %s"
    )
    if expose:
        sql = f"WITH f AS ({sql}), {_GUEST_EXPOSE} SELECT f.*, (SELECT id FROM x) FROM f"  # noqa: S608
    _GUEST_FACTS_SQL[key] = sql
    return sql


# The second half of the exposing read: the inbox row, when the guest holds one of the
# variants whose meta is given, is eligible and has a current visit. The time taken so far
# gains the statement's own.
_GUEST_EXPOSE = (
    f"x AS (INSERT INTO {InboxRequest._meta.db_table} "  # noqa: S608
    "(source_id, door, body, meta, ip, received_at, status, attempts, error) "
    "SELECT %s, %s, %s, jsonb_set(jsonb_set(e.meta, '{flowExecution,guestRef}', "
    "to_jsonb(f.ref::text)), '{flowExecution,flowExecutionTimeMs}', to_jsonb(%s::int "
    "+ floor(extract(epoch FROM clock_timestamp() - statement_timestamp()) * 1000)::int)), "
    "NULL, %s, %s, 0, '' "
    "FROM f CROSS JOIN LATERAL (SELECT %s::jsonb -> f.assigned_id::text AS meta) e "
    "WHERE e.meta IS NOT NULL AND f.visit_current = 1 AND f.in_exclusion = 0 "
    "AND (%s OR f.in_target = 1) RETURNING id)"
)


def _guest_facts(
    definition: FlowDefinition,
    kind: str,
    value: str,
    channel: str,
    now: datetime,
    *,
    exposure: _Exposure | None = None,
) -> GuestFacts | None:
    """The guest owning the identifier and what deciding needs of them, in one statement that
    writes ``exposure`` too if it can."""
    workspace = definition.workspace
    targets, exclusions = definition.targets, definition.exclusions
    params = [
        definition.experience.pk,
        connection.ops.adapt_datetimefield_value(now - workspace.session_timeout),
        *targets,
        *exclusions,
        channel,
        workspace.pk,
        kind,
        value,
    ]
    if exposure is not None:
        params += exposure.params
    row = row_select(
        _guest_facts_sql(len(targets), len(exclusions), expose=exposure is not None), params
    )
    if row is None:
        return None
    width = len(_GUEST_COLUMNS)
    values = list(row[:width])
    assigned_id, session_id, session_ref, current, in_target, in_exclusion = row[width:][:6]
    if isinstance(values[_REF], str):  # SQLite: the ref as text
        values[_REF] = uuid.UUID(values[_REF])
    if isinstance(values[_TRAITS], str | bytes):
        values[_TRAITS] = orjson.loads(values[_TRAITS])
    guest = Guest.from_db("default", _GUEST_COLUMNS, values)
    guest.workspace = workspace
    return GuestFacts(
        guest=guest,
        assigned_id=assigned_id,
        session_ref=str(
            session_ref if isinstance(session_ref, uuid.UUID) else uuid.UUID(session_ref)
        )
        if current
        else None,
        last_session_id=session_id,
        in_target=bool(in_target),
        in_exclusion=bool(in_exclusion),
        exposure_id=row[width + 6] if exposure is not None else None,
    )


# Names the new visit an answer opens (see ``_session_ref_new``).
SESSION_REFS = uuid.UUID("1f0c5e2a-6c1b-4d0e-9a57-5f0e4d1b7c33")


def _session_ref_new(guest: Guest, channel: str, last_session_id: int | None) -> str:
    """The ref of the visit an exposure opens, when the guest has none an event now joins.

    Derived from the guest, the channel and the guest's latest visit there, so that calls
    answered before the workers store the first one name the same new visit; once it is
    stored it is the latest visit, and the next new one gets another ref.
    """
    return str(uuid.uuid5(SESSION_REFS, f"{guest.ref}:{channel}:{last_session_id or 0}"))


def _running(experience: Experience, now: datetime) -> bool:
    if experience.status != Experience.Status.LIVE:
        return False
    if experience.starts_at and now < experience.starts_at:
        return False
    return not (experience.ends_at and now >= experience.ends_at)


def _eligible(definition: FlowDefinition, facts: GuestFacts) -> tuple[bool, str]:
    targets, exclusions = definition.target_ids, definition.exclusion_ids
    if not targets and not exclusions:
        return True, ""
    if facts.in_exclusion:
        return False, "excluded"
    if targets and not facts.in_target:
        return False, "not targeted"
    return True, ""


def _assignment(
    definition: FlowDefinition, guest: Guest, assigned_id: int | None
) -> Variant | None:
    """The guest's sticky variant; a new guest is placed by hash if the allocation lets them in."""
    experience = definition.experience
    variants = definition.variants
    by_id = {v.pk: v for v in variants}
    if assigned_id is not None and assigned_id in by_id:
        return by_id[assigned_id]
    ref = str(guest.ref)
    if not takes_part(experience.seed, ref, experience.traffic_allocation):
        return None
    variant = variants[variant_pick(experience.seed, ref, [v.weight for v in variants])]
    try:
        with transaction.atomic():
            Assignment.objects.create(experience=experience, guest=guest, variant=variant)
    except IntegrityError:  # another request placed the guest first: theirs stands
        kept = Assignment.objects.get(experience=experience, guest=guest).variant_id
        variant = by_id.get(kept, variant)
    return variant


class ExperienceRuleError(Exception):
    """A definition of an experience that the rules refuse, whoever tried to save it.

    ``field`` is the model field at fault (empty: the experience as a whole); ``path`` points
    inside a goal condition. Each caller renders it in its own format: the API as a 400 naming
    its field, the admin as the form's field error, an action as a message.
    """

    def __init__(self, message: str, *, field: str = "", path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.path = path


def experience_validate(
    *,
    experience: Experience,
    changes: dict,
    variants: list[dict] | None = None,
    metrics: list[dict] | None = None,
) -> None:
    """Check a change of ``experience`` against every rule its definition keeps.

    ``experience`` is the one stored (an unsaved one for a create), ``changes`` the fields to
    set, by model field name, and ``variants`` the whole list of variants it will have: dicts
    of the fields to set, with the ``ref`` of a stored variant to change it (one left out is
    removed), or ``None`` to keep the stored ones. A rule is checked when the change touches
    it. ``metrics`` likewise is the whole list of metrics (``None``: keep the stored ones).
    Raises ``ExperienceRuleError`` for the first rule broken.
    """
    stored = experience.pk is not None
    workspace_id = changes["workspace"].pk if changes.get("workspace") else experience.workspace_id
    if stored and workspace_id != experience.workspace_id:
        raise ExperienceRuleError("an object cannot move to another workspace", field="workspace")
    _friendly_id_check(experience, changes, workspace_id)
    if "traffic_allocation" in changes and not _whole(changes["traffic_allocation"], 0, 100):
        raise ExperienceRuleError(
            "the traffic allocation is a percentage, from 0 to 100", field="traffic_allocation"
        )
    if "correction" in changes and changes["correction"] not in Experience.Correction.values:
        raise ExperienceRuleError(
            f"no correction {changes['correction']!r}; use holm or bh", field="correction"
        )
    status = changes.get("status", experience.status)
    if status not in Experience.Status.values:
        raise ExperienceRuleError(f"no status {status!r}", field="status")
    for key in ("target_segments", "exclusion_segments"):
        foreign = [s.slug for s in changes.get(key, ()) if s.workspace_id != workspace_id]
        if foreign:
            raise ExperienceRuleError(f"no segment {foreign[0]!r} in this workspace", field=key)
    if "starts_at" in changes or "ends_at" in changes:
        starts = changes.get("starts_at", experience.starts_at)
        ends = changes.get("ends_at", experience.ends_at)
        if starts and ends and ends <= starts:
            raise ExperienceRuleError("endsAt must be after startsAt", field="ends_at")
    if metrics is not None:
        metrics_validate(experience, metrics)
    if variants is None and "status" not in changes:
        return
    current = {
        ref: {"name": name, "weight": weight, "is_control": is_control}
        for ref, name, weight, is_control in (
            experience.variants.values_list("ref", "name", "weight", "is_control") if stored else ()
        )
    }
    if variants is None:
        weights = [v["weight"] for v in current.values()]
    else:
        _variants_check(experience, current, variants)
        default = Variant._meta.get_field("weight").default
        weights = [_effective(current, v, "weight", default) for v in variants]
    if status == Experience.Status.LIVE and sum(weights) <= 0:
        raise ExperienceRuleError(
            "a live experience needs variants whose weights add up to more than 0",
            field="status",
        )


def metrics_validate(experience: Experience, metrics: list[dict]) -> None:
    """One primary metric (when there are any), each complete for its kind and role."""
    stored = {m.ref: m for m in experience.metrics.all()} if experience.pk is not None else {}
    unknown = [str(m["ref"]) for m in metrics if "ref" in m and m["ref"] not in stored]
    if unknown:
        raise ExperienceRuleError(f"no metric {unknown[0]} in this experience", field="metrics")

    def value(item: dict, key: str):
        if key in item:
            return item[key]
        if "ref" in item:
            return getattr(stored[item["ref"]], key)
        return Metric._meta.get_field(key).get_default()

    primaries = 0
    for index, item in enumerate(metrics):
        where = f"metric {index + 1}"
        role, kind = value(item, "role"), value(item, "kind")
        if role not in Metric.Role.values:
            raise ExperienceRuleError(
                f"{where}: no role {role!r}; use primary, secondary or guardrail",
                field="metrics",
            )
        if kind not in Metric.Kind.values:
            raise ExperienceRuleError(
                f"{where}: no kind {kind!r}; use conversion, count or sum", field="metrics"
            )
        primaries += role == Metric.Role.PRIMARY
        event = value(item, "event")
        if not isinstance(event, str) or not event.strip():
            raise ExperienceRuleError(f"{where}: name the event it counts", field="metrics")
        if not _whole(value(item, "window_days"), 1, 365):
            raise ExperienceRuleError(f"{where}: the window is from 1 to 365 days", field="metrics")
        if kind == Metric.Kind.SUM and not value(item, "property"):
            raise ExperienceRuleError(
                f"{where}: a sum needs the numeric property to add up, e.g. revenue",
                field="metrics",
            )
        condition = value(item, "condition")
        if condition is not None:
            try:
                property_condition_validate(condition)
            except RuleError as error:
                raise ExperienceRuleError(
                    f"{where}: {error.message}", field="metrics", path=error.path
                ) from None
        direction, threshold = (
            value(item, "guardrail_direction"),
            value(item, "guardrail_threshold"),
        )
        if role == Metric.Role.GUARDRAIL:
            if direction not in Metric.Direction.values:
                raise ExperienceRuleError(
                    f"{where}: a guardrail says which way it must not move: "
                    "must_not_drop or must_not_rise",
                    field="metrics",
                )
            if (
                not isinstance(threshold, int | float)
                or isinstance(threshold, bool)
                or not 0 <= threshold <= 1000
            ):
                raise ExperienceRuleError(
                    f"{where}: a guardrail needs the change it allows, in percent (0 to 1000)",
                    field="metrics",
                )
    if metrics and primaries != 1:
        raise ExperienceRuleError(
            f"an experience has exactly one primary metric, not {primaries}", field="metrics"
        )


FRIENDLY_ID = re.compile(r"[-a-zA-Z0-9_]+")
MAX_WEIGHT = 1_000_000


def _friendly_id_check(experience: Experience, changes: dict, workspace_id: int | None) -> None:
    """Immutable once created: TRACKING events, segment rules and websites refer to it."""
    if "friendly_id" not in changes:
        return
    friendly_id = changes["friendly_id"]
    if experience.pk is not None:
        if friendly_id != experience.friendly_id:
            raise ExperienceRuleError("the friendlyId cannot change", field="friendly_id")
        return
    if not isinstance(friendly_id, str) or not FRIENDLY_ID.fullmatch(friendly_id):
        raise ExperienceRuleError(
            "a friendlyId is letters, digits, hyphens and underscores", field="friendly_id"
        )
    max_length = Experience._meta.get_field("friendly_id").max_length
    if len(friendly_id) > max_length:
        raise ExperienceRuleError(
            f"a friendlyId has at most {max_length} characters", field="friendly_id"
        )
    if Experience.objects.filter(workspace_id=workspace_id, friendly_id=friendly_id).exists():
        raise ExperienceRuleError(
            "this workspace already has an experience with this id", field="friendly_id"
        )


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _effective(current: dict, item: dict, key: str, default=None):
    """A variant's value once changed: the one given, else the stored one."""
    if key in item:
        return item[key]
    return current.get(item.get("ref"), {}).get(key, default)


def _variants_check(experience: Experience, current: dict, variants: list[dict]) -> None:
    names = [_effective(current, v, "name") for v in variants]
    if not all(names):
        raise ExperienceRuleError("a new variant needs a name", field="variants")
    if len(set(names)) != len(names):
        raise ExperienceRuleError("variant names must differ", field="variants")
    if any("weight" in v and not _whole(v["weight"], 0, MAX_WEIGHT) for v in variants):
        raise ExperienceRuleError(
            f"a variant's weight is a whole number from 0 to {MAX_WEIGHT}", field="variants"
        )
    if sum(1 for v in variants if _effective(current, v, "is_control")) > 1:
        raise ExperienceRuleError("at most one variant is the control", field="variants")
    unknown = [str(v["ref"]) for v in variants if "ref" in v and v["ref"] not in current]
    if unknown:
        raise ExperienceRuleError(f"no variant {unknown[0]} in this experience", field="variants")
    dropped = set(current) - {v["ref"] for v in variants if "ref" in v}
    if dropped:
        # Removing one would take its guests' assignments and exposures with it.
        in_use = (
            Variant.objects.filter(experience=experience, ref__in=dropped)
            .filter(
                Exists(Assignment.objects.filter(variant=OuterRef("pk")))
                | Exists(FlowExecution.objects.filter(variant=OuterRef("pk")))
            )
            .values_list("name", flat=True)
        )
        if in_use:
            raise ExperienceRuleError(
                f"variant {in_use[0]!r} has guests assigned; set its weight to 0",
                field="variants",
            )


@transaction.atomic
def experience_save(*, experience: Experience, data: dict) -> Experience:
    """Create or update an experience, variants included, once the rules allow the change.

    ``data`` holds the fields to set; ``data["variants"]``, when given, is the whole list:
    variants with a ``ref`` are updated, the others added, and those left out removed.
    Raises ``ExperienceRuleError`` (see ``experience_validate``) before writing anything.
    """
    data = dict(data)
    variants = data.pop("variants", None)
    metrics = data.pop("metrics", None)
    experience_validate(experience=experience, changes=data, variants=variants, metrics=metrics)
    if data.get("status") == Experience.Status.LIVE and experience.live_since is None:
        experience.live_since = timezone.now()
    segments = {
        key: data.pop(key) for key in ("target_segments", "exclusion_segments") if key in data
    }
    for key, value in data.items():
        setattr(experience, key, value)
    experience.save()
    for key, value in segments.items():
        getattr(experience, key).set(value)
    if variants is not None:
        _variants_replace(experience, variants)
    if metrics is not None:
        metrics_replace(experience=experience, metrics=metrics)
    flow_definitions_forget_soon()
    return experience


def metrics_replace(*, experience: Experience, metrics: list[dict]) -> None:
    """Set the whole list: a metric with its ``ref`` is updated, one without added, the rest
    removed (results are computed from events, so nothing is lost with a metric)."""
    kept = [m["ref"] for m in metrics if "ref" in m]
    experience.metrics.exclude(ref__in=kept).delete()
    stored = {m.ref: m for m in experience.metrics.all()}
    for item in metrics:
        metric = stored[item["ref"]] if "ref" in item else Metric(experience=experience)
        for key, value in item.items():
            if key != "ref":
                setattr(metric, key, value)
        metric.save()


def _variants_replace(experience: Experience, variants: list[dict]) -> None:
    existing = {v.ref: v for v in experience.variants.all()}
    kept = {item["ref"] for item in variants if "ref" in item}
    dropped = [v for ref, v in existing.items() if ref not in kept]
    Variant.objects.filter(pk__in=[v.pk for v in dropped]).delete()
    released = [
        item["ref"] for item in variants if "ref" in item and item.get("is_control") is False
    ]
    variant_controls_release(experience=experience, refs=released)
    # Names are unique per experience: set renamed ones aside first so two can swap names.
    renamed = [item["ref"] for item in variants if "ref" in item and "name" in item]
    Variant.objects.filter(experience=experience, ref__in=renamed).update(
        name=Concat(Value("~"), "ref")
    )
    for item in variants:
        variant = existing[item["ref"]] if "ref" in item else Variant(experience=experience)
        for key, value in item.items():
            setattr(variant, key, value)
        variant.save()


def variant_controls_release(*, experience: Experience, refs: Iterable[uuid.UUID]) -> None:
    """Unmark these variants as the control before another variant becomes it.

    An experience has at most one control at any moment (a database constraint), so when the
    control moves, the old one must let go first, whichever of the two is saved first.
    """
    Variant.objects.filter(experience=experience, ref__in=list(refs), is_control=True).update(
        is_control=False
    )


@transaction.atomic
def experience_status_set(*, experience: Experience, status: str) -> Experience:
    """Launch, pause or complete an experience if the rules allow it; every later decision in
    this process sees it. Raises ``ExperienceRuleError`` (a launch without any weight)."""
    experience = Experience.objects.select_for_update().get(pk=experience.pk)
    experience_validate(experience=experience, changes={"status": status})
    experience.status = status
    fields = ["status"]
    if status == Experience.Status.LIVE and experience.live_since is None:
        experience.live_since = timezone.now()
        fields.append("live_since")
    experience.save(update_fields=fields)
    flow_definitions_forget_soon()
    return experience


def content_render(content, guest: Guest | None):
    """The variant's content with ``{{firstName}}``, ``{{email}}``, ``{{traits.plan}}`` filled."""
    values = {}
    if guest is not None:
        values = {
            "firstName": guest.first_name,
            "lastName": guest.last_name,
            "email": guest.email,
            "guestRef": str(guest.ref),
        }
        values |= {f"traits.{k}": v for k, v in (guest.traits or {}).items()}

    def fill(value):
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), "")), value)
        if isinstance(value, list):
            return [fill(item) for item in value]
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        return value

    return fill(content)


def assignments_follow_merge(*, final: dict[int, int]) -> None:
    """Experiment assignments follow a guest merge (``FOOTPRINT["GUEST_MERGE_FOLLOWERS"]``):
    ``final`` maps each merged guest to its survivor; where both had one, the survivor's stands.
    """
    winners = set(final.values())
    taken = set(
        Assignment.objects.filter(guest_id__in=winners).values_list("experience_id", "guest_id")
    )
    moving = Assignment.objects.filter(guest_id__in=list(final)).order_by("assigned_at", "pk")
    drop = []
    for pk, experience_id, guest_id in moving.values_list("pk", "experience_id", "guest_id"):
        target = (experience_id, final[guest_id])
        if target in taken:
            drop.append(pk)
        else:
            taken.add(target)
    if drop:
        Assignment.objects.filter(pk__in=drop).delete()
    Assignment.objects.filter(guest_id__in=list(final)).update(
        guest_id=Case(
            *[When(guest_id=loser, then=Value(winner)) for loser, winner in final.items()]
        )
    )
