import contextlib
import json
import uuid
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html

from tracking.admin import ChannelFilter, channel_shown
from tracking.admin_base import (
    OfferedChoicesFilter,
    SeenWithinFilter,
    SystemRecordAdmin,
    WorkspaceScopedAdmin,
    object_pk,
    pretty_json,
)
from tracking.models import Event, Workspace
from tracking.selectors import workspaces_visible

from .exports import export_csv
from .models import (
    Erasure,
    Guest,
    GuestMerge,
    Identity,
    Segment,
    SegmentMembership,
    SegmentRun,
    Session,
)
from .rules import RuleError
from .segment_sql import members_query
from .segments import segment_recompute, segment_validate
from .tasks import segment_recompute as segment_recompute_task

TIMELINE_PAGE_SIZE = 25
# The timeline's offset is a bigint in SQL: a page past that is not a page (the first is shown).
TIMELINE_LAST_PAGE = (2**63 - 1) // TIMELINE_PAGE_SIZE - 1
GUEST_PAGE_SESSIONS = 20


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ["kind", "value", "created_at"]
    readonly_fields = ["kind", "value", "created_at"]
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class LastSeenFilter(SeenWithinFilter):
    title = "last seen"
    parameter_name = "seen"
    field_name = "last_seen"
    SPANS = {key: span for key, span in SeenWithinFilter.SPANS.items() if key != "1h"}
    OLDER = ("older", "More than 30 days ago")

    def lookups(self, request, model_admin):
        return [*super().lookups(request, model_admin), self.OLDER]

    def queryset(self, request, queryset):
        if self.value() == self.OLDER[0]:
            return queryset.filter(last_seen__lt=timezone.now() - timedelta(days=30))
        return super().queryset(request, queryset)


class SegmentFilter(OfferedChoicesFilter):
    """Guests that are current members of a segment (of the user's workspaces)."""

    title = "segment"
    parameter_name = "segment"

    def lookups(self, request, model_admin):
        segments = Segment.objects.order_by("name")
        if not request.user.is_superuser:
            segments = segments.filter(workspace__in=workspaces_visible(request.user))
        return [(str(pk), name) for pk, name in segments.values_list("pk", "name")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        current = SegmentMembership.objects.filter(
            guest=OuterRef("pk"), segment_id=self.value(), exited_at__isnull=True
        )
        return queryset.filter(Exists(current))


def guest_label(guest) -> str:
    """A guest as a person names them: their name, else their email, else "visitor" and the
    start of their ref (a whole ref would widen every table it is in)."""
    name = f"{guest.first_name} {guest.last_name}".strip()
    return name or guest.email or f"{guest.get_guest_type_display()} {str(guest.ref)[:8]}"


@admin.register(Guest)
class GuestAdmin(WorkspaceScopedAdmin):
    list_display = ["who", "guest_type", "email", "first_seen", "last_seen"]
    list_filter = ["guest_type", LastSeenFilter, SegmentFilter]
    search_fields = ["=ref", "=identities__value", "^email", "^first_name", "^last_name"]
    search_help_text = "Any identifier (exact), or the start of an email or name."
    ordering = ["-last_seen", "-id"]
    fieldsets = [
        (None, {"fields": ["ref", "guest_type", "email", "first_name", "last_name"]}),
        ("Seen", {"fields": ["first_seen", "last_seen", "merged_into"]}),
        ("Traits", {"fields": ["traits_pretty"]}),
    ]
    readonly_fields = ["ref", "traits_pretty", "first_seen", "last_seen", "merged_into"]
    inlines = [IdentityInline]

    @admin.display(description="guest", ordering="last_name")
    def who(self, obj):
        return format_html('<span title="{}">{}</span>', obj.ref, guest_label(obj))

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.resolver_match and request.resolver_match.url_name.endswith("changelist"):
            # Merged guests live on only as old refs that point at their survivor.
            queryset = queryset.filter(merged_into__isnull=True)
        return queryset

    def get_search_results(self, request, queryset, search_term):
        """Exact identifier or ref, or the start of an email or name; no join duplicates."""
        term = search_term.strip()
        if not term:
            return queryset, False
        # The guests owning an identifier come first as a short list, so that the whole search
        # is ORs of indexed conditions (the upper-case prefix indexes) the planner can combine.
        owners = list(Identity.objects.filter(value=term).values_list("guest_id", flat=True)[:100])
        condition = (
            Q(pk__in=owners)
            | Q(email__istartswith=term)
            | Q(first_name__istartswith=term)
            | Q(last_name__istartswith=term)
        )
        with contextlib.suppress(ValueError):  # not a UUID: no ref can match
            condition |= Q(ref=uuid.UUID(term))
        return queryset.filter(condition), False

    def has_add_permission(self, request):
        return False

    @admin.display(description="traits")
    def traits_pretty(self, obj):
        return pretty_json(obj.traits)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        guest = self.get_object(request, object_id)
        if guest is not None:
            extra_context = {**(extra_context or {}), **self._guest_page(request, guest)}
        return super().change_view(request, object_id, form_url, extra_context)

    def _guest_page(self, request, guest: Guest) -> dict:
        """Sessions, merges and a page of the timeline, without counting the whole timeline."""
        try:
            page = max(1, int(request.GET.get("timeline", 1)))
        except ValueError:
            page = 1
        if page > TIMELINE_LAST_PAGE:
            page = 1
        start = (page - 1) * TIMELINE_PAGE_SIZE
        events = list(
            Event.objects.filter(guest=guest)
            .select_related("source", "session")
            .order_by("-timestamp", "-id")[start : start + TIMELINE_PAGE_SIZE + 1]
        )
        return {
            "timeline": events[:TIMELINE_PAGE_SIZE],
            "timeline_page": page,
            "timeline_next": page + 1 if len(events) > TIMELINE_PAGE_SIZE else None,
            "timeline_previous": page - 1 if page > 1 else None,
            "sessions": list(guest.sessions.order_by("-started_at")[:GUEST_PAGE_SESSIONS]),
            "merges": list(guest.merges.all()[:20]),
            "memberships": list(
                guest.memberships.select_related("segment").order_by("-entered_at")[:50]
            ),
        }


@admin.register(Identity)
class IdentityAdmin(SystemRecordAdmin):
    list_display = ["kind", "value", "guest", "created_at"]
    search_fields = ["=value"]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]


@admin.register(Session)
class SessionAdmin(SystemRecordAdmin):
    list_display = [
        "started_at",
        "guest_name",
        channel_shown,
        "status",
        "duration",
        "events",
        "page_views",
        "landing_page",
    ]
    list_filter = ["status", ChannelFilter]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]
    search_fields = ["=ref", "=client_session_id"]
    ordering = ["-started_at"]

    @admin.display(description="guest")
    def guest_name(self, obj):
        return format_html('<span title="{}">{}</span>', obj.guest.ref, guest_label(obj.guest))

    @admin.display(description="events", ordering="event_count")
    def events(self, obj):
        return obj.event_count

    @admin.display(description="page views", ordering="page_view_count")
    def page_views(self, obj):
        return obj.page_view_count

    @admin.display(description="landing page")
    def landing_page(self, obj):
        page = obj.first_page or "–"
        return page if len(page) <= 48 else page[:47] + "…"


@admin.register(GuestMerge)
class GuestMergeAdmin(SystemRecordAdmin):
    list_display = ["created_at", "guest", "merged_ref", "reason", "merged_by", "message_id"]
    list_filter = ["reason"]
    list_select_related = ["guest"]
    raw_id_fields = ["guest"]


@admin.register(Erasure)
class ErasureAdmin(WorkspaceScopedAdmin):
    list_display = ["erased_at", "guest_ref", "erased_by", "events", "sessions", "identities"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = [
            "workspace",
            "name",
            "slug",
            "description",
            "rule",
            "is_active",
            "recompute_every",
        ]
        widgets = {"rule": forms.Textarea(attrs={"rows": 16, "cols": 90, "class": "fp-rule"})}

    def clean(self):
        data = super().clean()
        workspace, slug, rule = data.get("workspace"), data.get("slug"), data.get("rule")
        if workspace is not None and slug and rule is not None:
            try:
                segment_validate(workspace_id=workspace.pk, slug=slug, rule=rule)
            except RuleError as error:
                self.add_error("rule", f"{error.path}: {error.message}")
        return data


def preview_refused(message: str) -> JsonResponse:
    """A preview request the editor would never send."""
    return JsonResponse({"error": {"path": "", "message": message}}, status=400)


@admin.register(Segment)
class SegmentAdmin(WorkspaceScopedAdmin):
    form = SegmentForm
    list_display = ["name", "slug", "workspace", "member_count", "computed_at", "is_active"]
    list_filter = ["is_active"]
    list_select_related = ["workspace"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["member_count", "computed_at"]
    actions = ["recompute_now", "export_csv"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if "workspace" in form.base_fields and not request.user.is_superuser:
            form.base_fields["workspace"].queryset = workspaces_visible(request.user)
        return form

    def get_urls(self):
        preview = path(
            "preview/",
            self.admin_site.admin_view(self.preview_view),
            name="profiles_segment_preview",
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request):
        """How many guests a rule selects right now (the editor's live count)."""
        if request.method != "POST":
            return JsonResponse({"error": {"path": "", "message": "use POST"}}, status=405)
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):
            return preview_refused("the body is not JSON, or nests too deeply")
        if not isinstance(body, dict):
            return preview_refused("the body is a JSON object with workspace, slug and rule")
        workspace_id = object_pk(Workspace, body.get("workspace"))
        visible = workspaces_visible(request.user)
        workspace = None if workspace_id is None else visible.filter(pk=workspace_id).first()
        if workspace is None:
            return JsonResponse({"error": {"path": "workspace", "message": "choose a workspace"}})
        slug, rule = body.get("slug") or "", body.get("rule")
        if not isinstance(slug, str):
            return JsonResponse({"error": {"path": "slug", "message": "must be a string"}})
        try:
            segment_validate(workspace_id=workspace.pk, slug=slug, rule=rule)
        except RuleError as error:
            return JsonResponse({"error": {"path": error.path, "message": error.message}})
        count = members_query(rule, workspace_id=workspace.pk, now=timezone.now()).count()
        return JsonResponse({"count": count})

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change or "rule" in form.changed_data:
            transaction.on_commit(lambda: segment_recompute_task.delay(obj.pk))

    @admin.action(description="Recompute now", permissions=["change"])
    def recompute_now(self, request, queryset):
        for segment in queryset:
            run = segment_recompute(segment)
            messages.success(request, f"{segment.name}: {run.entered} entered, {run.exited} left.")

    @admin.action(description="Export members as CSV", permissions=["view"])
    def export_csv(self, request, queryset):
        segments = list(queryset[:2])
        if len(segments) != 1:
            messages.error(request, "Choose exactly one segment to export.")
            return None
        response = StreamingHttpResponse(
            export_csv(segments[0], traits=[]), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{segments[0].slug}.csv"'
        return response


@admin.register(SegmentRun)
class SegmentRunAdmin(SystemRecordAdmin):
    workspace_field = "segment__workspace"
    list_display = ["started_at", "segment", "kind", "version", "entered", "exited", "stale"]
    list_filter = ["kind", "stale"]
    list_select_related = ["segment"]
