"""The ingestion doors in the OpenAPI schema.

The doors are plain Django views (they speak other vendors' wire formats, not DRF), so
drf-spectacular cannot see them; this post-processing hook adds the paths each door of the
registry describes (``DoorSpec.openapi_paths``) to the same schema.
"""

from __future__ import annotations

from .doors import DOORS
from .doors.schema import TAG


def doors_paths() -> dict:
    paths: dict = {}
    for door in DOORS.values():
        if door.openapi_paths is not None:
            paths.update(door.openapi_paths())
    return paths


def doors_describe(result, generator, request, public):
    """drf-spectacular post-processing hook: add the ingestion doors to the schema."""
    result.setdefault("paths", {}).update(doors_paths())
    tags = result.setdefault("tags", [])
    if not any(tag.get("name") == TAG for tag in tags):
        tags.append({"name": TAG, "description": "Wire formats of other vendors; see the README."})
    return result
