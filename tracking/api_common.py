"""Pieces the management API's writable serializers share."""

from __future__ import annotations

from django.http import QueryDict
from rest_framework import parsers, serializers
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.pagination import CursorPagination, _positive_int
from rest_framework.parsers import DataAndFiles

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


def nul_character_path(data) -> str | None:
    """The path (``exclusionSegments[0]``, ``traits.plan``) of the first key or string in
    ``data`` that holds U+0000, or None. Walked without recursion: a body may nest deeply."""
    stack = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "the body"
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and "\x00" in key:
                    return name.replace("\x00", "\\u0000")
                stack.append((name, item))
        elif isinstance(value, list | tuple):
            stack.extend(
                (f"{path}[{index}]", item) for index, item in reversed(list(enumerate(value)))
            )
    return None


class InvalidCharacter(APIException):
    status_code = 400
    default_code = "invalid_character"

    def __init__(self, field: str) -> None:
        super().__init__(
            {
                "code": "invalid_character",
                "message": f"{field} contains the NUL character (U+0000), which cannot be stored",
                "field": field,
            }
        )


class NulRefusingMixin:
    """A parser that refuses U+0000 anywhere in what it parsed: PostgreSQL text cannot hold it,
    so it would otherwise fail in the database as a server error."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if isinstance(data, DataAndFiles):
            found = nul_character_path(dict(data.data.lists()))
        elif isinstance(data, QueryDict):
            found = nul_character_path(dict(data.lists()))
        else:
            found = nul_character_path(data)
        if found is not None:
            raise InvalidCharacter(found)
        return data


class JSONParser(NulRefusingMixin, parsers.JSONParser):
    pass


class FormParser(NulRefusingMixin, parsers.FormParser):
    pass


class MultiPartParser(NulRefusingMixin, parsers.MultiPartParser):
    pass


class Pages(CursorPagination):
    """Cursor pages of up to ``pageSize`` items (``page_size``, the older name, still works)."""

    page_size_query_param = "pageSize"
    max_page_size = 500

    def get_page_size(self, request):
        for name in (self.page_size_query_param, "page_size"):
            if name in request.query_params:
                try:
                    return _positive_int(
                        request.query_params[name], strict=True, cutoff=self.max_page_size
                    )
                except ValueError:
                    break
        return self.page_size
