"""Pieces the management API's writable serializers share."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
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


class WorkspaceScopedViewSetMixin:
    """A viewset that shows only the objects of the user's workspaces (superusers too: the API
    speaks for a member).

    A viewset says what it lists in ``base_queryset()``; ``get_queryset()`` keeps the rows of
    the user's workspaces and cannot be overridden (a class that tries is refused at import),
    so no viewset can forget the scoping. ``workspace_field`` is the path to the workspace.
    """

    workspace_field = "workspace"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise ImproperlyConfigured(
                f"{cls.__name__} overrides get_queryset(); say what it lists in "
                "base_queryset() and let the mixin scope it to the user's workspaces"
            )

    def base_queryset(self):
        return self.queryset.all()

    def scoped(self, queryset):
        """``queryset`` cut to the user's workspaces (for lookups beside the list's own)."""
        visible = workspaces_visible(self.request.user)
        return queryset.filter(**{f"{self.workspace_field}__in": visible})

    def get_queryset(self):
        return self.scoped(self.base_queryset())
