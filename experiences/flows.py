"""Flow definitions: what deciding an experience needs, read once and cached per process.

``/v2/callFlows`` is the hottest read path: an experience with its variants, its segments and
the source its exposures go in by would cost five queries per call. Each web process
keeps them for ``FOOTPRINT_FLOW_CACHE_SECONDS`` (5 s by default). Writes through the API or the
admin forget the process's copy at once; other processes see a change within that time.
Loading one makes the workspace's *Experiences* source on first use, which is why this is
not a selector.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from tracking import services as tracking_services
from tracking.errors import IngestError
from tracking.models import Source, Workspace
from tracking.selectors import workspace_get_by_client_key

from .models import Experience, Variant


@dataclass(frozen=True, slots=True)
class FlowDefinition:
    """What deciding a flow needs, read once and shared between requests."""

    workspace: Workspace
    experience: Experience
    variants: tuple[Variant, ...]
    target_ids: frozenset[int]
    exclusion_ids: frozenset[int]
    # The workspace's Experiences source: its exposures' inbox rows and TRACKING events.
    source: Source
    # The variants by id, and the target and exclusion segments' ids in the order the guest
    # read binds them: what every call would otherwise rebuild.
    variants_by_id: dict[int, Variant]
    targets: tuple[int, ...]
    exclusions: tuple[int, ...]

    @property
    def default(self) -> Variant | None:
        """The variant a guest who does not take part sees: the control, else the first."""
        return next((v for v in self.variants if v.is_control), next(iter(self.variants), None))


# The source its TRACKING events are stored under, one per workspace.
EXPERIENCES_SOURCE = "Experiences"

_cache: dict[tuple[str, str], tuple[float, FlowDefinition]] = {}
_lock = threading.Lock()


def flow_definition_get(*, client_key: object, friendly_id: object) -> FlowDefinition:
    """The experience ``friendly_id`` of the workspace whose client key is given.

    Raises ``IngestError`` 401 for an unknown client key and 404 for an unknown experience.
    """
    if not isinstance(client_key, str) or not client_key:
        raise IngestError(
            "missing_client_key", "clientKey is required", field="clientKey", status=401
        )
    if not isinstance(friendly_id, str) or not friendly_id:
        raise IngestError("missing_friendlyId", "friendlyId is required", field="friendlyId")
    key = (client_key, friendly_id)
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    definition = _flow_definition_load(client_key, friendly_id)
    with _lock:
        _cache[key] = (now + settings.FOOTPRINT["FLOW_CACHE_SECONDS"], definition)
    return definition


def flow_definitions_forget() -> None:
    """Drop this process's cached definitions (after an experience or its variants change)."""
    with _lock:
        _cache.clear()


def flow_definitions_forget_soon() -> None:
    """Forget now and again when the current transaction commits, so that no request reading
    the old rows in between keeps them."""
    flow_definitions_forget()
    transaction.on_commit(flow_definitions_forget)


def experiences_source(workspace: Workspace) -> Source:
    """The workspace's source for TRACKING events, made on first use."""
    return tracking_services.workspace_source_get(
        workspace=workspace, name=EXPERIENCES_SOURCE, kind=Source.Kind.SERVER
    )


def _flow_definition_load(client_key: str, friendly_id: str) -> FlowDefinition:
    workspace = workspace_get_by_client_key(client_key, field="clientKey")
    experience = (
        Experience.objects.filter(workspace=workspace, friendly_id=friendly_id)
        .prefetch_related("variants", "target_segments", "exclusion_segments")
        .first()
    )
    if experience is None:
        raise IngestError(
            "unknown_experience", f"no experience {friendly_id!r}", field="friendlyId", status=404
        )
    experience.workspace = workspace
    source = experiences_source(workspace)
    source.workspace = workspace
    variants = tuple(experience.variants.all())
    target_ids = frozenset(s.pk for s in experience.target_segments.all())
    exclusion_ids = frozenset(s.pk for s in experience.exclusion_segments.all())
    return FlowDefinition(
        workspace=workspace,
        experience=experience,
        variants=variants,
        target_ids=target_ids,
        exclusion_ids=exclusion_ids,
        source=source,
        variants_by_id={v.pk: v for v in variants},
        targets=tuple(sorted(target_ids)),
        exclusions=tuple(sorted(exclusion_ids)),
    )
