import contextlib
import json
import uuid
from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Window
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path, reverse
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
from tracking.pipeline import hook
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
from .segments import segment_recompute, segment_slug_follow, segment_validate
from .selectors import guest_identities_by_kind, guest_totals, rule_names
from .tasks import segment_recompute as segment_recompute_task
from .timeline import event_sentence

TIMELINE_PAGE_SIZE = 25
# The timeline's offset is a bigint in SQL: a page past that is not a page (the first is shown).
TIMELINE_LAST_PAGE = (2**63 - 1) // TIMELINE_PAGE_SIZE - 1
GUEST_PAGE_SESSIONS = 20
# Matching guests the segment editor shows beside the live count.
PREVIEW_SAMPLE = 10


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
            extra_context = {
                **(extra_context or {}),
                **self._guest_page(request, guest),
                "title": guest_display_name(guest),
                "subtitle": None,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def _guest_page(self, request, guest: Guest) -> dict:
        """The profile: totals, chart, identities, segments, merges and a page of the timeline,
        in bounded queries (nothing counts or sums a guest's whole history)."""
        try:
            page = max(1, int(request.GET.get("timeline", 1)))
        except ValueError:
            page = 1
        if page > TIMELINE_LAST_PAGE:
            page = 1
        start = (page - 1) * TIMELINE_PAGE_SIZE
        events = list(
            Event.objects.filter(guest=guest)
            .select_related("source")
            .order_by("-timestamp", "-id")[start : start + TIMELINE_PAGE_SIZE + 1]
        )
        shown_events = events[:TIMELINE_PAGE_SIZE]
        identifies_traits_before(guest, shown_events)
        experiences = hook("EXPERIENCES_NAMED")(
            workspace_id=guest.workspace_id,
            friendly_ids={event.name for event in shown_events if event.type == "TRACKING"},
        )
        totals = guest_totals(guest)
        return {
            "guest": guest,
            "full_name": " ".join(part for part in (guest.first_name, guest.last_name) if part),
            "totals": totals,
            "traits": sorted((guest.traits or {}).items())
            if isinstance(guest.traits, dict)
            else [],
            "activity_chart": activity_chart(totals),
            "identity_groups": guest_identities_by_kind(guest),
            "timeline": [(event, event_sentence(event, experiences)) for event in shown_events],
            "timeline_page": page,
            "timeline_next": page + 1 if len(events) > TIMELINE_PAGE_SIZE else None,
            "timeline_previous": page - 1 if page > 1 else None,
            "sessions": list(guest.sessions.order_by("-started_at")[:GUEST_PAGE_SESSIONS]),
            "merges": list(guest.merges.all()[:20]),
            "memberships": list(
                guest.memberships.select_related("segment").order_by("-entered_at")[:50]
            ),
        }


# How far back past a timeline page the guest page looks for the identify before its oldest one.
IDENTIFY_LOOKBACK_EVENTS = 1000


def identifies_traits_before(guest: Guest, events: list) -> None:
    """Sets ``traits_before`` on each identify of the page: the traits of the guest's identify
    before it (on the page, else among the next ``IDENTIFY_LOOKBACK_EVENTS`` older events), so its
    sentence can say which traits changed."""
    identifies = [event for event in events if event.type == "identify"]
    if not identifies:
        return
    oldest = identifies[-1]
    older = (
        Event.objects.filter(guest=guest, timestamp__lte=oldest.timestamp)
        .exclude(pk=oldest.pk)
        .order_by("-timestamp")
        .values("pk")[:IDENTIFY_LOOKBACK_EVENTS]
    )
    before = (
        Event.objects.filter(pk__in=older, type="identify")
        .order_by("-timestamp", "-id")
        .values_list("traits", flat=True)
        .first()
    )
    for event in reversed(identifies):
        event.traits_before = before
        before = {**(before or {}), **(event.traits or {})}


def guest_display_name(guest: Guest) -> str:
    """What a person calls the guest: their name, else their email, else what they are."""
    name = " ".join(part for part in (guest.first_name, guest.last_name) if part)
    if name:
        return name
    if guest.email:
        return guest.email
    if guest.guest_type == Guest.Type.CUSTOMER:
        return f"Customer {str(guest.ref)[:8]}"
    return f"Anonymous visitor {str(guest.ref)[:8]}"


def activity_chart(totals) -> dict:
    """The guest's events per day as a Chart.js bar chart (drawn by footprint/charts.js)."""
    return {
        "type": "bar",
        "data": {
            "labels": [day.strftime("%b %-d") for day, _ in totals.per_day],
            "datasets": [{"label": "events", "data": [n for _, n in totals.per_day]}],
        },
        "options": {
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
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
        "duration_shown",
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

    @admin.display(description="duration", ordering="duration")
    def duration_shown(self, obj):
        return obj.duration_label

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
    list_display = ["name", "slug", "workspace", "members", "computed_at", "is_active"]
    list_filter = ["is_active"]
    list_select_related = ["workspace"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["member_count", "computed_at"]
    actions = ["recompute_now", "export_csv"]

    @admin.display(description="members", ordering="member_count")
    def members(self, obj):
        """The member count, linking to those guests (the guest list filtered by the segment)."""
        url = reverse("admin:profiles_guest_changelist")
        return format_html('<a href="{}?segment={}">{}</a>', url, obj.pk, f"{obj.member_count:,}")

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
        names = path(
            "names/",
            self.admin_site.admin_view(self.names_view),
            name="profiles_segment_names",
        )
        return [preview, names, *super().get_urls()]

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
        members = members_query(rule, workspace_id=workspace.pk, now=timezone.now())
        # The count rides along with the sample's ids (a window over every member), so the rule
        # is evaluated once, not once for the count and again for the sample; the window keeps
        # only ids, and the ten guests are read by id after.
        found = list(
            members.order_by()
            .annotate(members_total=Window(Count("pk")))
            .values_list("pk", "members_total")[:PREVIEW_SAMPLE]
        )
        guests = Guest.objects.only(
            "pk", "ref", "email", "first_name", "last_name", "guest_type"
        ).in_bulk([pk for pk, _ in found])
        sample = [
            {
                "label": guest_display_name(guests[pk]),
                "url": reverse("admin:profiles_guest_change", args=[pk]),
            }
            for pk, _ in found
        ]
        count = found[0][1] if found else 0
        return JsonResponse({"count": count, "sample": sample})

    def names_view(self, request):
        """The names a rule can use in a workspace (the builder's choices and warnings)."""
        workspace_id = object_pk(Workspace, request.GET.get("workspace"))
        visible = workspaces_visible(request.user)
        if workspace_id is None or not visible.filter(pk=workspace_id).exists():
            return JsonResponse({"error": {"path": "workspace", "message": "choose a workspace"}})
        return JsonResponse(rule_names(workspace_id=workspace_id))

    def save_model(self, request, obj, form, change):
        renamed = change and "slug" in form.changed_data and "workspace" not in form.changed_data
        super().save_model(request, obj, form, change)
        if renamed:
            old = form.initial["slug"]
            for other in segment_slug_follow(workspace_id=obj.workspace_id, old=old, new=obj.slug):
                messages.info(request, f"{other.name}: its rule now refers to “{obj.slug}”.")
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
