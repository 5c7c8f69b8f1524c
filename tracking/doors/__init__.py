"""The front doors: one module per wire format, and the registry of them.

The pipeline (parsing stored requests), the replay of failed events and the OpenAPI description
find a door here by its ``models.Door`` value. A new door needs that value (a choice, with its
migration), its module (ending in its ``SPEC``), an entry here, its view in ``tracking.views``
(wearing ``http.door_view``) and a URL. ``/v2/callFlows`` (``experiences.views``) answers its
decision itself and leaves its exposure here, to the ``personalize`` door.
"""

from __future__ import annotations

from . import collect, optimizely, personalize, segment, stream
from .base import DoorSpec

DOORS: dict[str, DoorSpec] = {
    spec.key: spec
    for spec in (segment.SPEC, stream.SPEC, optimizely.SPEC, collect.SPEC, personalize.SPEC)
}
