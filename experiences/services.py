"""Running an experience for a guest (``/v2/callFlows``) and the TRACKING event it leaves."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Concat
from django.utils import timezone

from profiles.identity import guest_get_or_create
from profiles.models import Guest, SegmentMembership, Session
from tracking import services as tracking_services
from tracking.channels import WEB, channel_normalise
from tracking.errors import IngestError
from tracking.messages import Message, email_normalize
from tracking.models import Door, Source, Workspace

from .assignment import takes_part, variant_pick
from .models import Assignment, Experience, FlowExecution, Variant
from .selectors import FlowDefinition, flow_definitions_forget_soon

EXPERIENCES_SOURCE = "Experiences"
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


@dataclass
class Decision:
    experience: Experience
    variant: Variant | None
    guest: Guest | None
    exposed: bool
    execution: FlowExecution | None = None
    session_ref: str | None = None
    reason: str = ""


def identifier_of(body: dict) -> tuple[str, str]:
    """The one guest identifier a callFlows request carries, as (kind, value)."""
    given = [key for key in ("browserId", "email", "identifiers") if body.get(key)]
    if len(given) != 1:
        raise IngestError(
            "invalid_identifier",
            "give exactly one of browserId, email or identifiers",
            field="browserId",
        )
    key = given[0]
    value = body[key]
    if key == "browserId":
        if not isinstance(value, str) or len(value) > 255:
            raise IngestError("invalid_identifier", "browserId must be a string", field=key)
        return "browser", value
    if key == "email":
        email = email_normalize(value)
        if not email:
            raise IngestError("invalid_identifier", "email is not an email address", field=key)
        return "email", email
    if not isinstance(value, dict) or not all(
        isinstance(value.get(k), str) and value.get(k) for k in ("id", "provider")
    ):
        raise IngestError(
            "invalid_identifier", "identifiers must be {id, provider}", field="identifiers"
        )
    return value["provider"][:64], value["id"][:255]


def flow_call(*, definition: FlowDefinition, body: dict, now: datetime | None = None) -> Decision:
    """Decide the variant for the guest the request names and, if exposed, record it.

    A known guest with an assignment costs one query to find, then the store of the TRACKING
    event and the flow execution; the definition comes from the per-process cache.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    kind, value = identifier_of(body)
    experience = definition.experience
    default = definition.default
    guest, assigned_id = _guest_find(definition, kind, value)

    if not _running(experience, now):
        return Decision(experience, default, guest, exposed=False, reason=experience.status)
    if not definition.variants:
        return Decision(experience, None, guest, exposed=False, reason="no variants")

    with transaction.atomic():
        if guest is None:
            guest = guest_get_or_create(
                workspace_id=definition.workspace.pk,
                kind=kind,
                value=value,
                door=Door.PERSONALIZE,
                now=now,
            )
        eligible, reason = _eligible(definition, guest)
        if not eligible:
            return Decision(experience, default, guest, exposed=False, reason=reason)
        variant = _assignment(definition, guest, assigned_id)
        if variant is None:
            return Decision(experience, default, guest, exposed=False, reason="not allocated")
        execution = FlowExecution(
            experience=experience,
            variant=variant,
            guest=guest,
            browser_ref=value if kind == "browser" else "",
            occurred_at=now,
        )
        execution.execution_time_ms = int((time.perf_counter() - started) * 1000)
        session_ref = _tracking_event_store(
            definition=definition, execution=execution, body=body, identifier=(kind, value)
        )
        return Decision(
            experience, variant, guest, exposed=True, execution=execution, session_ref=session_ref
        )


def _running(experience: Experience, now: datetime) -> bool:
    if experience.status != Experience.Status.LIVE:
        return False
    if experience.starts_at and now < experience.starts_at:
        return False
    return not (experience.ends_at and now >= experience.ends_at)


def _guest_find(definition: FlowDefinition, kind: str, value: str) -> tuple[Guest | None, int]:
    """The guest owning the identifier and the variant id they are assigned, in one query."""
    assigned = Assignment.objects.filter(
        experience_id=definition.experience.pk, guest_id=OuterRef("pk")
    ).values("variant_id")[:1]
    guest = (
        Guest.objects.filter(
            identities__workspace_id=definition.workspace.pk,
            identities__kind=kind,
            identities__value=value,
        )
        .annotate(assigned_id=Subquery(assigned))
        .first()
    )
    if guest is None:
        return None, None
    return guest, guest.assigned_id


def _eligible(definition: FlowDefinition, guest: Guest) -> tuple[bool, str]:
    targets, exclusions = definition.target_ids, definition.exclusion_ids
    if not targets and not exclusions:
        return True, ""
    member_of = set(
        SegmentMembership.objects.filter(
            guest=guest, exited_at__isnull=True, segment_id__in=[*targets, *exclusions]
        ).values_list("segment_id", flat=True)
    )
    if member_of & exclusions:
        return False, "excluded"
    if targets and not member_of & targets:
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


@transaction.atomic
def experience_save(*, experience: Experience, data: dict) -> Experience:
    """Create or update an experience from validated API data, variants included.

    ``data["variants"]``, when given, is the whole list: variants with a ``ref`` are updated,
    the others added, and those left out removed (the caller checks no guest was assigned one).
    """
    data = dict(data)
    variants = data.pop("variants", None)
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
    flow_definitions_forget_soon()
    return experience


def _variants_replace(experience: Experience, variants: list[dict]) -> None:
    existing = {v.ref: v for v in experience.variants.all()}
    kept = {item["ref"] for item in variants if "ref" in item}
    dropped = [v for ref, v in existing.items() if ref not in kept]
    Variant.objects.filter(pk__in=[v.pk for v in dropped]).delete()
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


def experiences_status_set(*, experiences: QuerySet[Experience], status: str) -> int:
    """Launch, pause or complete experiences; every later decision in this process sees it."""
    changed = experiences.update(status=status)
    flow_definitions_forget_soon()
    return changed


def experiences_source(workspace: Workspace) -> Source:
    return tracking_services.workspace_source_get(
        workspace=workspace, name=EXPERIENCES_SOURCE, kind=Source.Kind.SERVER
    )


def _tracking_event_store(
    *,
    definition: FlowDefinition,
    execution: FlowExecution,
    body: dict,
    identifier: tuple[str, str],
) -> str | None:
    """Store the TRACKING event through the event store, then the flow execution in its session."""
    workspace, experience = definition.workspace, definition.experience
    # One name with the doors', so an exposure joins the visit it happened in.
    channel = channel_normalise(str(body.get("channel") or "")) or WEB
    point_of_sale = str(body.get("pointOfSale") or "")[:255]
    flow = {
        "ref": str(execution.ref),
        "occurredAt": int(execution.occurred_at.timestamp() * 1000),
        "flowRef": str(experience.ref),
        "flowFriendlyId": experience.friendly_id,
        "flowVariantRef": str(execution.variant.ref),
        "guestRef": str(execution.guest.ref),
        "flowExecutionTimeMs": execution.execution_time_ms,
        "status": execution.status,
    }
    message = Message(
        workspace_id=workspace.pk,
        source_id=definition.source_id,
        door=Door.PERSONALIZE,
        type="TRACKING",
        name=experience.friendly_id,
        message_id=f"flow-{execution.ref}",
        timestamp=execution.occurred_at,
        received_at=execution.occurred_at,
        channel=channel,
        properties={
            "ref": str(uuid.uuid4()),
            "variant": execution.variant.name,
            "pointOfSale": point_of_sale,
            "browserRef": execution.browser_ref or None,
            "flowExecutionRef": str(execution.ref),
            "arbitraryData": {
                "flowExecution": flow,
                "_bx_arbitraryDataV3ga": {
                    "core": {"pointOfSale": point_of_sale, "channel": channel},
                    "bxt": {"flowExecution": dict(flow), "category": "EXECUTED"},
                },
            },
        },
        identifiers=[identifier],
    )
    tracking_services.events_store(
        messages=[message],
        dedup_windows={definition.source_id: definition.dedup_window},
        session_timeouts={workspace.pk: workspace.session_timeout},
    )
    execution.session_id = message.session_id
    execution.save(force_insert=True)
    if message.session_id is None:
        return None
    return str(Session.objects.values_list("ref", flat=True).get(pk=message.session_id))


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
