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


MAX_BODY_NESTING = 64


def nesting_path(data, limit: int = MAX_BODY_NESTING) -> str | None:
    """The path of the first value nested deeper than ``limit`` objects and arrays, or None.
    No API field nests more than a few levels; a deeper body is refused before it reaches a
    serializer, a rule compiler or PostgreSQL's jsonb, each of which recurses."""
    stack = [("", data, 0)]
    while stack:
        path, value, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth >= limit:
                return path or "the body"
            if isinstance(value, dict):
                named = ((f"{path}.{k}" if path else str(k), item) for k, item in value.items())
            else:
                named = ((f"{path}[{index}]", item) for index, item in enumerate(value))
            stack.extend((name, item, depth + 1) for name, item in named)
    return None


class TooDeep(APIException):
    status_code = 400
    default_code = "too_deep"

    def __init__(self, field: str) -> None:
        super().__init__(
            {
                "code": "too_deep",
                "message": f"{field} nests more than {MAX_BODY_NESTING} objects and arrays deep",
                "field": field,
            }
        )


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
    """DRF's JSON parser, refusing NUL and bodies nested deeper than any API field goes."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The decoder itself gave up: far deeper than MAX_BODY_NESTING.
            raise TooDeep("the body") from None
        found = nesting_path(data)
        if found is not None:
            raise TooDeep(found)
        return data


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
