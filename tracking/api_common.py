"""Pieces the management API's writable serializers share."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from .models import Workspace
from .selectors import workspaces_visible


def workspace_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="portal_id",
        queryset=Workspace.objects.all(),
        required=False,
        help_text="portal_id; may be left out when you belong to one workspace",
    )


def workspace_for_write(*, user, given: Workspace | None, instance) -> Workspace:
    """The workspace a created or updated object belongs to, checked against the user's.

    Left out, it is the instance's, or the user's only workspace. An object never moves.
    """
    visible = workspaces_visible(user)
    if instance is not None:
        if given is not None and given != instance.workspace:
            raise ValidationError({"workspace": "an object cannot move to another workspace"})
        return instance.workspace
    if given is None:
        mine = list(visible[:2])
        if len(mine) != 1:
            raise ValidationError({"workspace": "give the workspace's portal_id"})
        return mine[0]
    if not visible.filter(pk=given.pk).exists():
        raise ValidationError({"workspace": "you are not a member of this workspace"})
    return given
