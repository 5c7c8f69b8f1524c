"""What every Footprint admin page shares: workspace scoping, cheap pagination, JSON display,
and guards that turn malformed input into a refusal or nothing instead of a server error."""

from __future__ import annotations

import functools
import json
import math
from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers, widgets
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet, ValidationError
from django.core.paginator import Paginator
from django.db import DatabaseError, connection, models
from django.forms.fields import InvalidJSONInput
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext

from config.lib.db import on_postgres, setting_local

from .messages import MAX_NESTING
from .models import Workspace
from .selectors import workspaces_visible

# Lists the planner expects to be longer than this show its estimate instead of an exact count;
# shorter ones are counted, unless counting takes longer than the timeout (which the page then
# waits for in vain: it is kept short).
EXACT_COUNT_LIMIT = 20_000
EXACT_COUNT_TIMEOUT_MS = 50


def pretty_json(value) -> str:
    return format_html(
        '<pre class="fp-json">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str),
    )


class EstimatedCountPaginator(Paginator):
    """Counts exactly when that is quick; on PostgreSQL falls back to the planner's estimate.

    Large tables (events) must page without ``SELECT COUNT(*)`` over millions of rows: a list
    is counted only when the planner expects few rows, under a short timeout, and otherwise
    shown with the planner's estimate.
    """

    @cached_property
    def count(self) -> int:
        query = self.object_list
        if not on_postgres():
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


def workspace_ids_visible(request) -> list[int]:
    """The ids of the workspaces the request's user may read, read once per request.

    Lists filter by these ids rather than by a subquery: with ``workspace_id = 1`` in the
    query, PostgreSQL walks a (workspace, …, timestamp) index of each events partition in
    order and stops at the page's last row; behind a subquery it cannot know the workspace
    when it plans, and reads and sorts every matching event (seconds on millions of them).
    """
    ids = getattr(request, "_footprint_workspace_ids", None)
    if ids is None:
        ids = list(workspaces_visible(request.user).values_list("pk", flat=True))
        request._footprint_workspace_ids = ids
    return ids


class WorkspaceScopedAdmin(admin.ModelAdmin):
    """Shows a user only the objects of their workspaces (superusers see all)."""

    workspace_field = "workspace"
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**{f"{self.workspace_field}__in": workspace_ids_visible(request)})

    def action_checkbox(self, obj):
        """Django's selection checkbox, as the same HTML written directly: rendered by the form
        widget's templates it took about half of a 100-row list's rendering."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

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


class SystemRecordAdmin(WorkspaceScopedAdmin):
    """Records the pipeline writes (sessions, identities, merges, failed events, …): listed and
    shown, never added or edited by hand, so what the admin shows is what happened."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


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
        now = timezone.now()
        # Bounded above too (no stored time lies past the allowed clock skew), so PostgreSQL
        # reads only the months the span falls in, not the default partition or later months.
        return queryset.filter(
            **{
                f"{self.field_name}__gte": now - span[1],
                f"{self.field_name}__lte": now + settings.FOOTPRINT["MAX_FUTURE_SKEW"],
            }
        )


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


def json_problem(value) -> str | None:
    """Why PostgreSQL's jsonb, or the admin showing the value back, cannot take ``value``.

    Walks without recursion, like the doors' checks: the value may nest deeply.
    """
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            return "Text in JSON must not contain the NUL character (U+0000)."
        if isinstance(item, float) and not math.isfinite(item):
            return "Numbers in JSON must be finite."
        if isinstance(item, dict | list):
            if depth >= MAX_NESTING:
                return f"JSON may nest at most {MAX_NESTING} levels deep."
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


class StorableJSONField(forms.JSONField):
    """Django's JSON form field, refusing what would otherwise fail only when saved or shown.

    Django's parser raises ``RecursionError`` (not a validation error) on deeply nested input,
    and lets through NaN, ``1e400`` and ``"\\u0000"``, which PostgreSQL's jsonb refuses.
    """

    def to_python(self, value):
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise ValidationError(
                f"JSON may nest at most {MAX_NESTING} levels deep.", code="invalid"
            ) from None
        problem = json_problem(converted)
        if problem:
            raise ValidationError(problem, code="invalid")
        return converted

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return InvalidJSONInput(data)


class CheckedModelMultipleChoiceField(forms.ModelMultipleChoiceField):
    """Django's many-object choice, refusing a choice that is no primary key before it queries by
    it (SQLite cannot even bind an integer past 64 bits)."""

    def _check_values(self, value):
        if not self.to_field_name:
            for choice in value:
                if object_pk(self.queryset.model, choice) is None:
                    raise ValidationError(
                        self.error_messages["invalid_pk_value"],
                        code="invalid_pk_value",
                        params={"pk": choice},
                    )
        return super()._check_values(value)


class GuardedChangeList(ChangeList):
    """A change list that filters only by what its filters read.

    Django applies any other lookup on the model's own fields from the address as it is
    (``?id__regex=(``, ``?ip=abc``), and a value the column cannot take then fails in the
    database while the page renders. Such a lookup is refused as a wrong parameter, and Django
    shows the list unfiltered. The lookups the admin writes itself (a date hierarchy's, a raw-id
    popup's ``limit_choices_to``) still pass.
    """

    def get_filters(self, request):
        filters = super().get_filters(request)
        unread = set(filters[2]) - self._admin_lookups()
        if unread:
            raise IncorrectLookupParameters(
                f"no filter of this list reads {', '.join(sorted(unread))}"
            )
        return filters

    def _admin_lookups(self) -> set[str]:
        names = set()
        if self.date_hierarchy:
            names |= {f"{self.date_hierarchy}__gte", f"{self.date_hierarchy}__lt"}
        for fk_lookup in self.model._meta.related_fkey_lookups:
            if callable(fk_lookup):
                fk_lookup = fk_lookup()
            names.update(widgets.url_params_from_lookup_dict(fk_lookup))
        return names


class GuardedFormsMixin:
    """For any admin or inline: JSON fields refuse what cannot be stored, and many-object
    choices what cannot be an id (see above)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.JSONField):
            kwargs.setdefault("form_class", StorableJSONField)
        elif isinstance(db_field, models.ManyToManyField):
            kwargs.setdefault("form_class", CheckedModelMultipleChoiceField)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class GuardedAdminMixin(GuardedFormsMixin):
    """For any model admin: lists filter only by their filters, actions run only on a selection
    of real ids, and inline forms are guarded too."""

    def get_changelist(self, request, **kwargs):
        return GuardedChangeList

    def response_action(self, request, queryset):
        """Refuses a selection that holds anything but ids, before Django filters by it."""
        for value in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
            if object_pk(self.model, value) is None:
                self.message_user(
                    request,
                    f"{value[:40]!r} is not the id of any {self.opts.verbose_name}: nothing "
                    "was changed.",
                    messages.ERROR,
                )
                return None
        return super().response_action(request, queryset)

    def get_inlines(self, request, obj):
        return [guarded(inline) for inline in super().get_inlines(request, obj)]


@functools.cache
def guarded(admin_class: type) -> type:
    """``admin_class`` with the guard for its kind mixed in, unless it has it already."""
    guard = GuardedAdminMixin if issubclass(admin_class, admin.ModelAdmin) else GuardedFormsMixin
    if issubclass(admin_class, guard):
        return admin_class
    return type(admin_class.__name__, (guard, admin_class), {"__module__": admin_class.__module__})


class FootprintAdminSite(admin.AdminSite):
    """Django's admin site, guarding every admin registered on it: Footprint's, and those of
    the apps it uses (auth, authtoken), whose actions and lists take the same malformed input.
    """

    def register(self, model_or_iterable, admin_class=None, **options):
        super().register(model_or_iterable, guarded(admin_class or admin.ModelAdmin), **options)
