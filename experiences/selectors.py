"""Reads of experiences for the layers below (named in settings, never imported by them)."""

from __future__ import annotations

from django.urls import reverse

from .models import Experience


def experiences_named(*, workspace_id: int, friendly_ids) -> dict:
    """``FOOTPRINT["EXPERIENCES_NAMED"]``: the workspace's experiences with these friendly ids,
    by friendly id, as the guest timeline names them (name and admin page). One query."""
    from profiles.timeline import ExperienceNamed

    wanted = {str(friendly_id) for friendly_id in friendly_ids if friendly_id}
    if not wanted:
        return {}
    found = Experience.objects.filter(
        workspace_id=workspace_id, friendly_id__in=wanted
    ).values_list("pk", "friendly_id", "name")
    return {
        friendly_id: ExperienceNamed(
            name=name, url=reverse("admin:experiences_experience_change", args=[pk])
        )
        for pk, friendly_id, name in found
    }
