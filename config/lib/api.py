"""Pieces every API view shares that know no model: NUL-refusing parsers and cursor pages."""

from __future__ import annotations

from django.http import QueryDict
from rest_framework import parsers
from rest_framework.exceptions import APIException
from rest_framework.pagination import CursorPagination, _positive_int
from rest_framework.parsers import DataAndFiles


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
