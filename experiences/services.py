"""Running an experience for a guest (``/v2/callFlows``) and the TRACKING event it leaves."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from profiles.identity import guest_find, guest_get_or_create
from profiles.models import Guest, SegmentMembership
from tracking import services as tracking_services
from tracking.errors import IngestError
from tracking.messages import Message, email_normalize
from tracking.models import Door, Source, Workspace

from .assignment import takes_part, variant_pick
from .models import Assignment, Experience, FlowExecution, Variant

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


def flow_call(*, workspace: Workspace, body: dict, now: datetime | None = None) -> Decision:
    """Decide the variant for the guest the request names and, if exposed, record it."""
    started = time.perf_counter()
    now = now or timezone.now()
    friendly_id = body.get("friendlyId")
    if not isinstance(friendly_id, str) or not friendly_id:
        raise IngestError("missing_friendlyId", "friendlyId is required", field="friendlyId")
    kind, value = identifier_of(body)
    experience = (
        Experience.objects.filter(workspace=workspace, friendly_id=friendly_id)
        .prefetch_related("variants", "target_segments", "exclusion_segments")
        .first()
    )
    if experience is None:
        raise IngestError(
            "unknown_experience", f"no experience {friendly_id!r}", field="friendlyId", status=404
        )
    variants = list(experience.variants.all())
    default = next((v for v in variants if v.is_control), variants[0] if variants else None)
    guest = guest_find(workspace_id=workspace.pk, kind=kind, value=value)

    if not _running(experience, now):
        return Decision(experience, default, guest, exposed=False, reason=experience.status)
    if not variants:
        return Decision(experience, None, guest, exposed=False, reason="no variants")

    with transaction.atomic():
        if guest is None:
            guest = guest_get_or_create(
                workspace_id=workspace.pk, kind=kind, value=value, door=Door.PERSONALIZE, now=now
            )
        eligible, reason = _eligible(experience, guest)
        if not eligible:
            return Decision(experience, default, guest, exposed=False, reason=reason)
        variant = _assignment(experience, guest, variants)
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
            workspace=workspace,
            experience=experience,
            execution=execution,
            body=body,
            identifier=(kind, value),
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


def _eligible(experience: Experience, guest: Guest) -> tuple[bool, str]:
    targets = [s.pk for s in experience.target_segments.all()]
    exclusions = [s.pk for s in experience.exclusion_segments.all()]
    if not targets and not exclusions:
        return True, ""
    member_of = set(
        SegmentMembership.objects.filter(
            guest=guest, exited_at__isnull=True, segment_id__in=[*targets, *exclusions]
        ).values_list("segment_id", flat=True)
    )
    if member_of & set(exclusions):
        return False, "excluded"
    if targets and not member_of & set(targets):
        return False, "not targeted"
    return True, ""


def _assignment(experience: Experience, guest: Guest, variants: list[Variant]) -> Variant | None:
    """The guest's sticky variant; a new guest is placed by hash if the allocation lets them in."""
    by_id = {v.pk: v for v in variants}
    existing = (
        Assignment.objects.filter(experience=experience, guest=guest)
        .values_list("variant_id", flat=True)
        .first()
    )
    if existing is not None and existing in by_id:
        return by_id[existing]
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


def experiences_source(workspace: Workspace) -> Source:
    return tracking_services.workspace_source_get(
        workspace=workspace, name=EXPERIENCES_SOURCE, kind=Source.Kind.SERVER
    )


def _tracking_event_store(
    *,
    workspace: Workspace,
    experience: Experience,
    execution: FlowExecution,
    body: dict,
    identifier: tuple[str, str],
) -> str | None:
    """Save the flow execution and its TRACKING event through the event store."""
    source = experiences_source(workspace)
    execution.save()
    channel = str(body.get("channel") or "WEB")[:32]
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
        source_id=source.pk,
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
        dedup_windows={source.pk: source.dedup_window},
        session_timeouts={workspace.pk: workspace.session_timeout},
    )
    if message.session_id:
        FlowExecution.objects.filter(pk=execution.pk).update(session_id=message.session_id)
        from profiles.models import Session

        return str(Session.objects.values_list("ref", flat=True).get(pk=message.session_id))
    return None


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
