"""What every Footprint admin page shares: workspace scoping, cheap pagination, JSON display,
and guards that turn malformed input into a refusal or nothing instead of a server error."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import admin
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.paginator import Paginator
from django.db import DatabaseError, connection
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html

from .db import setting_local
from .models import Workspace
from .selectors import workspaces_visible

# Lists the planner expects to be longer than this show its estimate instead of an exact count;
# shorter ones are counted, unless counting takes longer than the timeout.
EXACT_COUNT_LIMIT = 20_000
EXACT_COUNT_TIMEOUT_MS = 150


def pretty_json(value) -> str:
    return format_html(
        '<pre class="fp-json">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


class EstimatedCountPaginator(Paginator):
    """Counts exactly when that is quick; on PostgreSQL falls back to the planner's estimate.

    Large tables (events) must page without ``SELECT COUNT(*)`` over millions of rows.
    """

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if connection.vendor != "postgresql":
            return query.count()
        estimate = self._estimate()
        if estimate > EXACT_COUNT_LIMIT:
            return estimate
        try:
            with setting_local("statement_timeout", f"{EXACT_COUNT_TIMEOUT_MS}ms"):
                return query.count()
        except DatabaseError:
            return estimate

    def _estimate(self) -> int:
        """The planner's row estimate for the list's query: no rows are read."""
        try:
            sql, params = self.object_list.values("pk").query.sql_with_params()
        except EmptyResultSet:  # a filter no row can match, such as an id past the column's range
            return 0
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Shows a user only the objects of their workspaces (superusers see all)."""

    workspace_field = "workspace"
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.workspace_field}__in": workspaces_visible(request.user)})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", choices_visible(request.user, db_field.related_model))
        if kwargs["queryset"] is None:
            del kwargs["queryset"]
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs.setdefault("queryset", choices_visible(request.user, db_field.related_model))
        if kwargs["queryset"] is None:
            del kwargs["queryset"]
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def choices_visible(user, model):
    """What a form of a non-superuser may point at: objects of their own workspaces.

    Without this a select (a source's workspace, an experience's segments) would list, and
    accept, other workspaces' objects. ``None``: the model is not owned by a workspace.
    """
    if user.is_superuser:
        return None
    if model is Workspace:
        return workspaces_visible(user)
    if _has_workspace(model):
        return model._default_manager.filter(workspace__in=workspaces_visible(user))
    # Owned through a parent (a variant through its experience, an inbox row through its source).
    for field in model._meta.concrete_fields:
        if field.many_to_one and _has_workspace(field.related_model):
            return model._default_manager.filter(
                **{f"{field.name}__workspace__in": workspaces_visible(user)}
            )
    return None


def _has_workspace(model) -> bool:
    return any(field.name == "workspace" for field in model._meta.concrete_fields)


class OfferedChoicesFilter(admin.SimpleListFilter):
    """A list filter that applies only the values it offers.

    Whatever else the address holds (``?segment=abc``, an id past the column's range, another
    workspace's source) is ignored, as if the filter were not set, instead of reaching the query.
    """

    def value(self):
        value = super().value()
        offered = {str(lookup) for lookup, _ in self.lookup_choices}
        return value if value in offered else None


class SeenWithinFilter(OfferedChoicesFilter):
    """Filter on a time field by a few useful recent spans (no scan of distinct dates)."""

    title = "when"
    parameter_name = "within"
    field_name = "timestamp"
    SPANS = {
        "1h": ("Last hour", timedelta(hours=1)),
        "24h": ("Last 24 hours", timedelta(days=1)),
        "7d": ("Last 7 days", timedelta(days=7)),
        "30d": ("Last 30 days", timedelta(days=30)),
    }

    def lookups(self, request, model_admin):
        return [(key, label) for key, (label, _) in self.SPANS.items()]

    def queryset(self, request, queryset):
        span = self.SPANS.get(self.value())
        if span is None:
            return queryset
        return queryset.filter(**{f"{self.field_name}__gte": timezone.now() - span[1]})


class FixedChoicesFilter(OfferedChoicesFilter):
    """Filter on a free-text field by a fixed list of values (no SELECT DISTINCT over the table)."""

    field_name = ""
    options: list[tuple[str, str]] = []

    def lookups(self, request, model_admin):
        return self.options

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(**{self.field_name: self.value()})


# --- Malformed input -------------------------------------------------------------------------


def object_pk(model, value):
    """The primary key of ``model`` that ``value`` (from a form or a JSON body) names, or None
    when it cannot name one: not a number for a numeric key, past the column's range, or text
    with U+0000 (which PostgreSQL cannot even compare)."""
    pk = model._meta.pk
    if isinstance(value, bool):
        return None
    try:
        key = pk.to_python(value)
    except (ValidationError, TypeError, ValueError, OverflowError):
        return None
    limits = connection.ops.integer_field_ranges.get(pk.get_internal_type())
    if key is None or (limits and not limits[0] <= key <= limits[1]):
        return None
    if isinstance(key, str) and "\x00" in key:
        return None
    return key
